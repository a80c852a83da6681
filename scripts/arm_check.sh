#!/usr/bin/env bash
# The ARM check: builds and tests devicenet in Debian bookworm armhf and
# arm64 userlands under QEMU user emulation, the way a Raspberry Pi user
# builds it (the distribution's Python, numpy, gcc and default flags).
#
# For each architecture it
#   1. makes (or reuses from the cache) a debootstrap userland with the
#      distribution's python3, numpy, Pillow, click, pytest and gcc;
#   2. copies the project's files in (git ls-files: no build outputs);
#   3. builds the compiled kernels: python3 setup.py build_ext --inplace,
#      no CFLAGS of our own;
#   4. counts NEON and scalar float instructions per function in the built
#      module (objdump -d; scripts/arm_neon.py) and requires a NEON kernel
#      with NEON arithmetic in every op family;
#   5. checks that the NEON variants are the ones selected at run time
#      (_native.variants, where the build has the registry), and on armhf
#      that a CPU without NEON selects the scalar ones;
#   6. runs the compiled-kernel and core tests (tests needing torch, onnx,
#      onnxruntime or pyopencl skip: those are not in the userland);
#   7. compares the shipped model's logits on the three test photos with
#      the x86 build's: same top-5, within 1e-4 of the largest logit.
# docs/ARM.md says what it measured and how long it takes.
#
# Needs root on a Debian/Ubuntu host (apt-get, debootstrap, chroot,
# unshare).  Options:
#   --arch "armhf arm64"  architectures (default both, run in parallel)
#   --cache DIR           userland cache (default /var/cache/devicenet-arm)
#   --fresh               remake the userlands even when cached
#   --neon report         print the NEON checks' failures but do not fail
#   --tests "FILES..."    test selection (default: $ARM_TESTS below)
#   --no-tests            build, count and compare only
#   --host-python PY      python with devicenet importable on the host, for
#                         the x86 logits (default python3; skipped if it
#                         cannot import devicenet)
#   --serial              one architecture after the other
#   --out DIR             logs and counts (default build/arm-check)
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ARCHES="armhf arm64"
CACHE="${ARM_CHECK_CACHE:-/var/cache/devicenet-arm}"
FRESH=0
NEON="require"
HOST_PY="python3"
PARALLEL=1
OUT="$SRC/build/arm-check"
SUITE=bookworm
# The userland: what a Raspberry Pi OS / Debian user installs to build the
# kernels, plus the tests' own needs.  Changing this list remakes the caches.
PACKAGES="python3,python3-dev,python3-setuptools,gcc,libc6-dev,binutils,python3-numpy,python3-pil,python3-click,python3-pytest,python3-pytest-timeout"
# The compiled-kernel and core tests: what runs in the userland, chosen to
# fit the time budget under emulation (docs/ARM.md has the timings).
ARM_TESTS="tests/test_native.py tests/test_variants.py tests/test_gemm.py tests/test_q8_kernels.py tests/test_cpu_plan.py tests/test_format.py tests/test_images.py tests/test_lite0.py tests/test_ports.py"
# Per-test and whole-step limits (seconds): a hang fails the step instead
# of eating CI's 90 minutes.
TEST_TIMEOUT=900
STEP_TIMEOUT=2400
# debootstrap from nothing: about 15 minutes here, but 40 were not enough
# with the machine's two cores five times oversubscribed (docs/ARM.md).
DEBOOTSTRAP_TIMEOUT=3600

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCHES="$2"; shift 2 ;;
        --cache) CACHE="$2"; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --neon) NEON="$2"; shift 2 ;;
        --tests) ARM_TESTS="$2"; shift 2 ;;
        --no-tests) ARM_TESTS=""; shift ;;
        --host-python) HOST_PY="$2"; shift 2 ;;
        --serial) PARALLEL=0; shift ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "arm_check: unknown option $1" >&2; exit 2 ;;
    esac
done

log() { echo "arm_check: $*"; }
die() { echo "arm_check: FAIL: $*" >&2; exit 1; }
now() { date +%s; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get, debootstrap, chroot)"

# ---- host tools ------------------------------------------------------------

host_tools() {
    local need=()
    command -v qemu-arm-static >/dev/null || need+=(qemu-user-static)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
    # binfmt_misc lets the kernel hand ARM binaries to qemu (debootstrap's
    # second stage and every chroot command depend on it).  A container may
    # not have it mounted yet.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc (a container without it cannot run ARM binaries)"
    fi
    update-binfmts --enable qemu-arm >/dev/null 2>&1 || true
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    local h
    for h in qemu-arm qemu-aarch64; do
        grep -qx enabled "/proc/sys/fs/binfmt_misc/$h" 2>/dev/null \
            || die "binfmt handler $h is not registered (update-binfmts --display $h)"
    done
}

# The Debian mirror this machine's apt uses (deb822 first, then the
# one-line format), so that the check uses the same mirror or proxy.
mirror() {
    local m=""
    if [ -n "${ARM_CHECK_MIRROR:-}" ]; then echo "$ARM_CHECK_MIRROR"; return; fi
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ]; then
        m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {
                                   if ($i !~ /security/) { print $i; exit } break } }')
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

# ---- the userland ----------------------------------------------------------

# Run a command in the userland: a private mount namespace with its own
# /proc, /tmp and /dev/shm (multiprocessing needs it), a clean environment.
in_root() {
    local root="$1"; shift
    unshare -m --propagation private sh -c '
        set -e; root="$1"; shift
        mount -t proc proc "$root/proc"
        mount -t tmpfs tmpfs "$root/tmp"
        mkdir -p "$root/dev/shm" && mount -t tmpfs tmpfs "$root/dev/shm"
        exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            PYTHONDONTWRITEBYTECODE=1 DEVICENET_REQUIRE_NATIVE=1 PYTHONPATH=/src \
            ${ARM_ENV:-} "$@"' sh "$root" "$@"
}

userland() {
    local arch="$1" root="$CACHE/$1" stamp
    stamp="$SUITE $(mirror) $PACKAGES"
    if [ "$FRESH" = 0 ] && [ -f "$root/.devicenet-userland" ] \
        && [ "$(cat "$root/.devicenet-userland")" = "$stamp" ] \
        && in_root "$root" python3 -c "import numpy, PIL, click, pytest" 2>/dev/null; then
        log "userland: cached ($root)"
        return
    fi
    log "userland: debootstrap $SUITE from $(mirror) (a few minutes under emulation)"
    rm -rf "$root" "$root.new"
    mkdir -p "$CACHE"
    # minbase + what we need: the smallest userland that builds and tests
    # devicenet; debootstrap runs the second stage through qemu.
    local rc=0
    timeout "$DEBOOTSTRAP_TIMEOUT" debootstrap --arch="$arch" --variant=minbase \
        --include="$PACKAGES" "$SUITE" "$root.new" "$(mirror)" > "$OUT/$arch-debootstrap.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 30 "$OUT/$arch-debootstrap.log"
        [ "$rc" = 124 ] && die "debootstrap timed out after $DEBOOTSTRAP_TIMEOUT s (a busy machine? log: $OUT/$arch-debootstrap.log)"
        die "debootstrap failed (log: $OUT/$arch-debootstrap.log)"
    fi
    rm -rf "$root.new/var/cache/apt/archives/"*.deb
    echo "$stamp" > "$root.new/.devicenet-userland"
    mv "$root.new" "$root"
}

copy_source() {
    local root="$1"
    rm -rf "$root/src" && mkdir -p "$root/src"
    if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked and new files, as they are in the working tree; not the
        # host's build outputs (an x86 .so would shadow the ARM build).
        (cd "$SRC" && git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
            | tar --null -T - -cf -) | tar -xf - -C "$root/src"
    else
        (cd "$SRC" && tar --exclude='./build' --exclude='*.so' --exclude='./.ci-venv*' \
            --exclude='__pycache__' --exclude='*.egg-info' -cf - .) | tar -xf - -C "$root/src"
    fi
}

# ---- one architecture ------------------------------------------------------

check_arch() {
    local arch="$1" root="$CACHE/$1" t0 t1 fails=0
    t0=$(now)
    exec 9>"$CACHE/$arch.lock"
    flock 9   # one check per userland at a time (two CI jobs on one machine)
    userland "$arch"
    t1=$(now); log "userland ready in $((t1 - t0)) s"

    # What a user of this userland gets: compiler defaults, library
    # versions, and the BLAS numpy's GEMMs go to.
    in_root "$root" sh -c '
        echo "gcc $(gcc -dumpfullversion) defaults: $(gcc -Q --help=target | awk '"'"'$1 ~ /^-m(arch|cpu|fpu|float-abi|thumb|tune)=?$/ && $2 != "" { printf "%s%s ", $1, $2 }'"'"')"
        python3 -c "import sys, numpy, PIL, click, pytest; print(\"python %s, numpy %s, Pillow %s, click %s, pytest %s\" % (sys.version.split()[0], numpy.__version__, PIL.__version__, click.__version__, pytest.__version__))"
        m=$(python3 -c "import numpy.core._multiarray_umath as m; print(m.__file__)")
        echo "numpy links: $(ldd "$m" | grep -oE "lib(open)?blas[^ ]*|libblis[^ ]*|libmkl[^ ]*" | sort -u | tr "\n" " ") -> $(readlink -f /etc/alternatives/libblas.so.3-* 2>/dev/null)"
    ' | sed "s/^/arm_check: /" || true

    copy_source "$root"
    log "build: python3 setup.py build_ext --inplace (distribution's flags)"
    local tb; tb=$(now)
    # -j: the files compile side by side where there are cores to spare
    # (each gcc is emulated, so this is most of the build's time); the
    # flags, and so the code, are the same as a serial build's.
    if ! in_root "$root" sh -c "cd /src && python3 setup.py build_ext --inplace -j $(nproc)" \
            > "$OUT/$arch-build.log" 2>&1; then
        tail -n 40 "$OUT/$arch-build.log"
        die "the kernels do not build"
    fi
    log "built in $(( $(now) - tb )) s"
    grep -E "^(gcc|arm-linux|aarch64-linux).* -c " "$OUT/$arch-build.log" | head -n 1 \
        | sed "s/^/arm_check: compile line: /" || true
    in_root "$root" sh -c 'objdump -d --no-show-raw-insn /src/devicenet/backends/_native*.so' \
        > "$OUT/$arch-native.dis"
    log "NEON float instructions per kernel function (objdump -d):"
    local neon_flag=()
    [ "$NEON" = report ] && neon_flag=(--report-only)
    python3 "$SRC/scripts/arm_neon.py" "$OUT/$arch-native.dis" --json "$OUT/$arch-neon.json" \
        "${neon_flag[@]}" || fails=$((fails + 1))

    log "kernel variants selected at run time (QEMU's CPU has NEON):"
    local expect=(--expect neon)
    [ "$NEON" = report ] && expect=()
    in_root "$root" sh -c 'cd /src && python3 scripts/arm_runtime.py variants "$@"' sh "${expect[@]}" \
        || fails=$((fails + 1))
    if [ "$arch" = armhf ]; then
        # An ARMv7 CPU without NEON (QEMU clears HWCAP_NEON): no NEON
        # variant may be selected.
        log "without NEON (QEMU_CPU=cortex-a7,neon=off):"
        ARM_ENV="QEMU_CPU=cortex-a7,neon=off" in_root "$root" \
            sh -c 'cd /src && python3 scripts/arm_runtime.py variants --forbid neon' \
            || [ "$NEON" = report ] || fails=$((fails + 1))
    fi

    if [ -z "$ARM_TESTS" ]; then
        log "tests: not run (--no-tests)"
    else
        log "tests: $ARM_TESTS"
        local t2; t2=$(now)
        in_root "$root" sh -c "cd /src && timeout $STEP_TIMEOUT python3 -m pytest -q -rs -p no:cacheprovider --timeout=$TEST_TIMEOUT --maxfail=10 --durations=10 $ARM_TESTS" \
            2>&1 | tee "$OUT/$arch-tests.log" || fails=$((fails + 1))
        log "tests took $(( $(now) - t2 )) s"
    fi

    log "shipped model on the three photos, against x86:"
    in_root "$root" sh -c 'cd /src && python3 scripts/arm_runtime.py logits /src/arm-logits.json' \
        || fails=$((fails + 1))
    cp "$root/src/arm-logits.json" "$OUT/$arch-logits.json" 2>/dev/null || true
    if [ -f "$OUT/x86-logits.json" ]; then
        python3 "$SRC/scripts/arm_runtime.py" compare "$OUT/x86-logits.json" "$OUT/$arch-logits.json" \
            || fails=$((fails + 1))
    else
        log "no x86 logits (see above): not compared"
    fi
    # CPU time as well as wall time: on a shared or busy machine the wall
    # time says little about what the check costs.
    times > "$OUT/$arch.times"   # no fork: a subshell would count nothing
    log "done in $(( $(now) - t0 )) s wall, CPU user/system of its processes:" \
        "$(tail -n 1 "$OUT/$arch.times"): $fails failed step(s)"
    [ "$fails" = 0 ]
}

# ---- main ------------------------------------------------------------------

mkdir -p "$OUT" "$CACHE"
T0=$(now)
host_tools
log "mirror: $(mirror); cache: $CACHE; arches: $ARCHES"
if (cd "$SRC" && "$HOST_PY" -c "import devicenet, numpy" 2>/dev/null); then
    (cd "$SRC" && "$HOST_PY" scripts/arm_runtime.py logits "$OUT/x86-logits.json") \
        || die "the x86 logits failed"
else
    rm -f "$OUT/x86-logits.json"
    log "$HOST_PY cannot import devicenet: the ARM logits will not be compared with x86"
fi

status=0
# Every line is tagged with its architecture, so the two can run side by
# side (each is mostly one core of emulation) and still be read apart.
run_tagged() {
    local a="$1"
    ( check_arch "$a" ) 2>&1 | sed -u "s/^/[$a] /" | tee "$OUT/$a.log"
    return "${PIPESTATUS[0]}"
}
# Each check runs as a job, waited for apart: run in an "if" its commands
# would lose set -e.
status=0
declare -A pids result
finish() {
    if wait "${pids[$1]}"; then result[$1]=PASS; else result[$1]=FAIL; status=1; fi
}
for a in $ARCHES; do
    run_tagged "$a" &
    pids[$a]=$!
    [ "$PARALLEL" = 1 ] || finish "$a"
done
if [ "$PARALLEL" = 1 ]; then
    for a in $ARCHES; do finish "$a"; done
fi
echo "======== ARM check ========"
for a in $ARCHES; do echo "$a: ${result[$a]} (log: $OUT/$a.log)"; done
log "all done in $(( $(now) - T0 )) s"
exit "$status"
