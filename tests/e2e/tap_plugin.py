"""pytest plugin: writes a TAP stream of the session to the file named by
$CKPTFS_TAP (one line per test, skips with their reason, the plan last), so
`make check` counts every end-to-end case.  Load with `-p tap_plugin`."""
import os

_lines = []


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and not report.passed) or \
            (report.when == "teardown" and report.failed):
        name = report.nodeid.split("::", 1)[-1]
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            _lines.append(f"ok {{n}} - {name} # SKIP {reason}")
        elif report.passed:
            _lines.append(f"ok {{n}} - {name} ({report.duration:.1f} s)")
        else:
            _lines.append(f"not ok {{n}} - {name} ({report.when} failed)")


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("CKPTFS_TAP")
    if not path:
        return
    with open(path, "w") as f:
        for i, line in enumerate(_lines, 1):
            f.write(line.replace("{n}", str(i), 1).replace("\n", " ") + "\n")
        if not _lines and exitstatus not in (0, 5):
            f.write("not ok 1 - pytest session failed before running tests\n")
            _lines.append("x")
        f.write(f"1..{len(_lines)}\n")
