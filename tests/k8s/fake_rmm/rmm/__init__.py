"""A stand-in for RAPIDS' rmm, so that rmm-init.py and rmm-verify.py can be
tested without a GPU. Only what those scripts call is here. The environment
sets the scene:
  FAKE_RMM_FREE, FAKE_RMM_TOTAL  free and total device memory in bytes
  FAKE_RMM_FAIL                  when set, reinitialize raises MemoryError
"""

import os


class _MemoryResources:
    @staticmethod
    def available_device_memory():
        free = int(os.environ.get("FAKE_RMM_FREE", str(12 << 30)))
        total = int(os.environ.get("FAKE_RMM_TOTAL", str(16 << 30)))
        return free, total


mr = _MemoryResources()


def reinitialize(pool_allocator=False, initial_pool_size=None, **_):
    if os.environ.get("FAKE_RMM_FAIL"):
        raise MemoryError("std::bad_alloc: out_of_memory: CUDA error at: cudaMalloc")
    if not pool_allocator or not isinstance(initial_pool_size, int):
        raise TypeError("expected pool_allocator=True and an int initial_pool_size")


class DeviceBuffer:
    def __init__(self, size=0):
        self.size = size
        self._data = b"\0" * min(size, 4096)

    @classmethod
    def to_device(cls, data):
        buf = cls(0)
        buf.size = len(data)
        buf._data = bytes(data)
        return buf

    def tobytes(self):
        return self._data
