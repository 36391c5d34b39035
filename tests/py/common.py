"""Shared helpers of the Python tests: paths from the environment ctest sets, a CLI runner, and a
closing line in the harness's format. A missing shared file fails loudly, never skips."""
import os
import shutil
import subprocess
import sys
import traceback

SHARED = (os.environ.get("LOWBIT_SHARED") or os.environ.get("LOWBIT_SHARED_DEFAULT")
          or os.path.join(os.path.dirname(__file__), "../../../shared"))
BIN = os.environ.get("LOWBIT_BIN", "build/lowbit")
TMP = os.environ.get("LOWBIT_TMP") or "/tmp/lowbit-pytest"
POCKET = os.path.join(SHARED, "models/pocket-llama-48m")


def shared(rel):
    path = os.path.join(SHARED, rel)
    if not os.path.exists(path):
        sys.exit(f"FATAL: shared file missing: {path} (set LOWBIT_SHARED)")
    return path


def fresh_tmp():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    return TMP


def out(name):
    """A path under TMP for one test's output: removed if it exists, parent created."""
    os.makedirs(TMP, exist_ok=True)
    d = os.path.join(TMP, name)
    shutil.rmtree(d, ignore_errors=True)
    return d


def lowbit(*args, check=True):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"lowbit {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def run_tests(tests):
    """Runs test functions, prints ok/FAIL lines and 'N passed, N failed'; exits non-zero on a failure."""
    passed = failed = 0
    for t in tests:
        try:
            t()
            passed += 1
            print(f"ok   {t.__name__}")
        except Exception:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL {t.__name__}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
