r"""Each example runs end to end (they build their own small data)."""
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / 'examples'


@pytest.mark.parametrize('script', sorted(p.name for p in
                                          EXAMPLES.glob('*.py')))
def test_example_runs(script, tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)],
                          capture_output=True, text=True, cwd=tmp_path,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), 'an example prints what it did'
    assert 'Traceback' not in proc.stderr
