"""Board port profiles (placeholder until profiles land: generic CPU)."""

from dataclasses import dataclass, field


@dataclass
class Profile:
    name: str = "generic"
    backends: list = field(default_factory=lambda: ["cpu"])
    threads: object = None
    residency: str = "resident"
    opencl_device: object = None


def select(name=None):
    return Profile(name or "generic")
