"""Ctrl-C during `python -m lib eval` cancels at once (issue 18): questions not started are dropped, the answers
stored so far are kept, the run is left resumable, and the process exits 130 without a traceback within 5 s."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from lib import engine
from lib.settings import load_settings
from tests.conftest import ROOT


def test_ctrl_c_cancels_a_running_eval_at_once(tmp_path, sample_kb_dir, openai_server):
    data = tmp_path / "data"
    shutil.copytree(sample_kb_dir, data)
    questions = tmp_path / "many.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i:04d}", "question": f"How long is window {i}?",
                                             "reference": "45 days"}) + "\n" for i in range(2000)))
    openai_server.first_token_delay = 0.1
    openai_server.reply = "45 days [1]."
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-interrupt", "OPENAI_BASE_URL": openai_server.base_url,
           "WORKBENCH_BASE_MODEL": "gpt-4o-mini", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lib", "eval", "--set", str(questions), "--arms", "baseline,rag",
                             "--concurrency", "4", "--run-name", "long", "--json", "--data-dir", str(data)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        answered = 0
        deadline = time.monotonic() + 120
        while answered < 6 and time.monotonic() < deadline:  # wait for the run to be well under way
            line = proc.stdout.readline()
            answered += '"arm"' in line
        assert answered >= 6, proc.stderr.read()
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert took < 5.0, f"took {took:.1f} s to stop"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "Cancelling" in err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["cancelled"] is True
    ws = engine.workspace_for(load_settings(env={}, secrets_file=None, data_dir=data))
    run = ws.run("long")
    assert run.status == "cancelled"  # resumable: Resume on the Evaluate page, or eval --resume
    assert answered <= run.answered == last["answered"] < 4000  # what was answered is kept; the rest dropped
    asked = len(openai_server.requests_to("/chat/completions"))
    time.sleep(1.0)
    assert len(openai_server.requests_to("/chat/completions")) == asked  # nothing is asked after the exit
