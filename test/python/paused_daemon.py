"""A batch that decodes while one long prompt waits on a paused daemon (SIGSTOP): how the
reference-engine tests show that no step of the loop waits for kvtier (test_refengine.py,
test_hybrid.py)."""
from __future__ import annotations

import random
import time
from typing import Any, Callable


def long_prompt_while_paused(daemon: Any, b: Any, prompt: list[int], what: str, *, max_step_s: float,
                             before_pause: Callable[[], None] = lambda: None, pause: bool = True) -> Any:
    """Four short requests decode; then `before_pause`, the daemon is paused (with pause=False
    the caller pauses it itself, at the moment it wants) and `prompt` arrives. For five steps
    it must stay WAITING while the batch decodes and no step lasts `max_step_s`; once the
    daemon is resumed it must be a 768-token hit, loaded without errors. Returns that request
    (the engine closed) for the caller to check its logits."""
    rng = random.Random(11)
    try:
        shorts = [b.add_request(f"s{i}", [rng.randrange(1024) for _ in range(100)], max_new_tokens=400)
                  for i in range(4)]
        for _ in range(4):
            b.step()
        before_pause()
        if pause:
            daemon.pause()
        try:
            long = b.add_request("long", prompt)
            n0, out0 = len(b.step_times), len(shorts[0].output_token_ids)
            for _ in range(5):
                b.step()
            assert long.status == "WAITING", f"{what} is unanswered: the request waits, unscheduled"
        finally:
            daemon.resume()
        steps = [dt for _, dt, _ in b.step_times[n0:]]
        assert len(shorts[0].output_token_ids) >= out0 + 5, f"the batch decoded while {what} waited"
        assert max(steps) < max_step_s, f"a step waited for {what}: {steps}"
        t0 = time.monotonic()
        while long.status != "FINISHED":
            b.step()
            assert time.monotonic() - t0 < 60
        for r in shorts:
            b.abort(r.request_id)
    finally:
        daemon.resume()
        b.close()
    assert long.external_tokens == 768 and long.load_error_blocks == set()
    return long
