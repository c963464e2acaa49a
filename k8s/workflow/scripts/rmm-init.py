#!/usr/bin/env python3
"""Initialises an RMM pool on GPU 0 and fails clearly when it cannot be had.

Used by step 3 before papermill runs. With --ipython-dir it also writes an
IPython startup file so that the notebook's kernel (a separate process) sets
up the same pool before its first cell.

Exit status: 0 when the pool is ready, 1 otherwise, with one line saying why.
"""

import argparse
import os
import re
import sys

UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(text):
    """Returns a size such as "6GiB", "512MB" or "1073741824" in bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        raise ValueError(f'"{text}" is not a size (examples: 6GiB, 512MiB, 1073741824)')
    size = int(float(m.group(1)) * UNITS[m.group(2).lower()])
    if size <= 0:
        raise ValueError(f'"{text}" is not a positive size')
    # RMM pools are 256-byte aligned.
    return size - size % 256


def gib(n):
    return f"{n / 2**30:.1f} GiB"


STARTUP = '''\
# Written by rmm-init.py (gpu-real-8-step-workflow): every kernel started with
# this IPYTHONDIR allocates GPU memory from one RMM pool.
import rmm
rmm.reinitialize(pool_allocator=True, initial_pool_size={size})
try:
    import cupy
    from rmm.allocators.cupy import rmm_cupy_allocator
    cupy.cuda.set_allocator(rmm_cupy_allocator)
except ImportError:
    pass
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pool-size", required=True, help="initial pool size, e.g. 6GiB")
    ap.add_argument("--ipython-dir", help="IPYTHONDIR that receives the startup file")
    args = ap.parse_args()

    try:
        size = parse_size(args.pool_size)
    except ValueError as e:
        print(f"rmm-init: error: --pool-size: {e}", file=sys.stderr)
        return 1
    try:
        import rmm
    except ImportError as e:
        print(f"rmm-init: error: cannot import rmm ({e}); use a RAPIDS image", file=sys.stderr)
        return 1

    free = total = None
    try:
        free, total = rmm.mr.available_device_memory()
    except Exception:  # Older RMM or no device yet: reinitialize will say.
        pass
    where = f" (free {gib(free)} of {gib(total)})" if free is not None else ""
    hint = "lower the rmm-pool-size param, or run the lite pipeline"
    if free is not None and size > free:
        print(f"rmm-init: error: an RMM pool of {gib(size)} does not fit on GPU 0{where}; {hint}",
              file=sys.stderr)
        return 1
    try:
        rmm.reinitialize(pool_allocator=True, initial_pool_size=size)
        probe = rmm.DeviceBuffer(size=1 << 20)
        del probe
    except Exception as e:
        print(f"rmm-init: error: cannot get an RMM pool of {gib(size)} on GPU 0{where}: "
              f"{type(e).__name__}: {e}; {hint}", file=sys.stderr)
        return 1
    print(f"rmm-init: RMM pool of {gib(size)} ready on GPU 0{where}")

    if args.ipython_dir:
        startup = os.path.join(args.ipython_dir, "profile_default", "startup")
        os.makedirs(startup, exist_ok=True)
        with open(os.path.join(startup, "00-rmm-pool.py"), "w", encoding="utf-8") as f:
            f.write(STARTUP.format(size=size))
        print(f"rmm-init: kernels started with IPYTHONDIR={args.ipython_dir} use the same pool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
