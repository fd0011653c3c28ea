"""Real programs nobody here wrote, for the workload tests (issue #10): fetched from PyPI or built
with Debian's toolchain at test set-up, cached between runs under WCP360_TEST_CACHE
(default ~/.cache/wcp360-tests)."""
