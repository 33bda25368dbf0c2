"""Each benchmark runs once in its tiny mode, so the scripts keep working (issue #10)."""
import subprocess
import sys

import pytest

from bot.settings import ROOT

pytestmark = pytest.mark.e2e  # nlu_eval needs the trained model


def test_benchmarks_run_in_quick_mode(model_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout
