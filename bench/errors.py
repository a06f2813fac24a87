"""User-facing errors. The CLI prints `error: <message>` and exits non-zero for these;
anything else is a bug and keeps its traceback (behind BENCH_DEBUG=1)."""


class BenchError(Exception):
    """Bad input or a state the user can fix; the message says what is wrong and how to fix it."""


class DivergenceError(BenchError):
    """A loss became NaN or inf; training stopped and the last good checkpoint was kept."""
