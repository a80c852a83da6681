/* The ops as Python sees them: each op's arguments (keywords filling a
 * typed struct, native.h), their checks, and how a call is cut into tasks
 * for the team.  ops.c defines the ops, module.c the Python functions
 * that run them. */
#ifndef DEVICENET_OPS_H
#define DEVICENET_OPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "q8.h"

/* What a keyword argument is. */
enum {
    ARG_IN,      /* a C-contiguous float32 buffer, read */
    ARG_OUT,     /* a C-contiguous float32 buffer, written */
    ARG_OPT,     /* as ARG_IN, or None (a NULL pointer) */
    ARG_INTS,    /* a C-contiguous buffer of integers, read (the op checks their type) */
    ARG_OPT_INTS, /* as ARG_INTS, or None (a NULL pointer) */
    ARG_SIZE,    /* an int (ptrdiff_t) */
    ARG_FLOAT,   /* a float */
};

typedef struct {
    const char *name;
    int kind;
    size_t offset;      /* of the field it fills in the op's struct */
    int optional;       /* may be left out: then ``fallback`` (ARG_FLOAT) or NULL (ARG_OPT) */
    double fallback;
} dn_arg;

#define MAX_BUFFERS 8

/* One checked call of an op: its struct of arguments, the buffers they
 * point into (held until released), and its job for the team. */
typedef struct step {
    const struct dn_opdef *op;
    union {
        dn_window_args window;
        dn_dense_q_args dense_q;
        dn_add_args add;
        dn_meanpool_args meanpool;
        dn_scale_args scale;
        dn_bias_act_args bias_act;
        dn_gemm_args gemm;
        dn_f32_gemm_args f32_gemm;
        dn_f32_gemm_pack_args f32_gemm_pack;
        dn_q8_gemm_args q8_gemm;
        dn_q8_gemm_pack_args q8_gemm_pack;
        dn_q8_dwconv_args q8_dwconv;
        dn_q8_add_args q8_add;
        dn_q8_meanpool_args q8_meanpool;
        dn_q8_quantize_args q8_quantize;
        dn_q8_dequantize_args q8_dequantize;
    } args;
    Py_buffer buf[MAX_BUFFERS];
    dn_job job;
    int worth;                           /* big enough to share among threads */
    void (*split)(dn_job *, ptrdiff_t);
} step_t;

typedef struct dn_opdef {
    const char *name;
    const char *doc;
    const dn_arg *args;                  /* ends with a NULL name */
    /* Check the filled struct (sizes, types, bounds) before any kernel
     * reads a byte, choose the variant, and set the job; -1 with an
     * exception set when it does not check out. */
    int (*check)(step_t *s);
} dn_opdef;

extern const dn_opdef dn_opdefs[];

/* The buffer of an op's argument ``name`` in a parsed step. */
Py_buffer *dn_step_buffer(step_t *s, const char *name);

#endif
