#!/usr/bin/env python3
"""RMM verification: initialises an RMM pool on GPU 0, allocates a device
buffer from it, copies bytes through it, frees it, and reports the pool size
and the GPU's free memory before and after.

With --pool-size-result and --free-memory-result, writes those two numbers
(in bytes) to the given files, the Task's results. Exit status: 0 when every
check passed, 1 otherwise, with one line saying which check failed.
"""

import argparse
import os
import sys

from importlib import util as importlib_util

# rmm-init.py lives beside this file; reuse its size parser.
_spec = importlib_util.spec_from_file_location(
    "rmm_init", os.path.join(os.path.dirname(os.path.abspath(__file__)), "rmm-init.py"))
rmm_init = importlib_util.module_from_spec(_spec)
_spec.loader.exec_module(rmm_init)


def fail(msg):
    print(f"rmm-verify: error: {msg}", file=sys.stderr)
    return 1


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pool-size", required=True, help="initial pool size, e.g. 1GiB")
    ap.add_argument("--buffer-size", required=True, help="size of the test buffer, e.g. 256MiB")
    ap.add_argument("--pool-size-result", help="file that receives the pool size in bytes")
    ap.add_argument("--free-memory-result", help="file that receives the free memory in bytes")
    args = ap.parse_args()

    try:
        pool = rmm_init.parse_size(args.pool_size)
        nbytes = rmm_init.parse_size(args.buffer_size)
    except ValueError as e:
        return fail(str(e))
    if nbytes > pool:
        return fail(f"the buffer ({rmm_init.gib(nbytes)}) must fit in the pool ({rmm_init.gib(pool)})")
    try:
        import rmm
    except ImportError as e:
        return fail(f"cannot import rmm ({e}); use a RAPIDS image")

    free0, total = rmm.mr.available_device_memory()
    print(f"rmm-verify: GPU 0: {rmm_init.gib(free0)} free of {rmm_init.gib(total)} before the pool")
    try:
        rmm.reinitialize(pool_allocator=True, initial_pool_size=pool)
    except Exception as e:
        return fail(f"cannot get an RMM pool of {rmm_init.gib(pool)}: {type(e).__name__}: {e}")
    free1, _ = rmm.mr.available_device_memory()
    print(f"rmm-verify: pool of {rmm_init.gib(pool)} ready; {rmm_init.gib(free1)} free")

    try:
        buf = rmm.DeviceBuffer(size=nbytes)
    except Exception as e:
        return fail(f"cannot allocate {rmm_init.gib(nbytes)} from the pool: {type(e).__name__}: {e}")
    if buf.size != nbytes:
        return fail(f"allocated {buf.size} bytes, asked for {nbytes}")
    pattern = bytes(range(256)) * 16
    small = rmm.DeviceBuffer.to_device(pattern)
    if small.tobytes() != pattern:
        return fail("bytes copied to the device and back differ")
    print(f"rmm-verify: allocated {rmm_init.gib(nbytes)} and round-tripped {len(pattern)} bytes")
    del buf, small
    free2, _ = rmm.mr.available_device_memory()
    print(f"rmm-verify: buffers freed; {rmm_init.gib(free2)} free (the pool stays reserved)")

    for path, value in ((args.pool_size_result, pool), (args.free_memory_result, free2)):
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(str(value))
    print("rmm-verify: RMM verification passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
