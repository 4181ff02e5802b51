"""Admission: --max-streams slots, a bounded queue of waiters (first come, first served), 503 with
Retry-After only when the queue is full or a wait runs out; HTTP and WebSocket share both."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.sync.client import connect

from voxport.api.errors import ApiError
from voxport.api.slots import Slots
from tests.api_helpers import api_server, health, speech, wait_for
from tests.test_speech_load import _slow_stream

BODY = {"model": "tiny", "voice": "0", "max_frames": 4, "response_format": "pcm"}


def test_slots_hand_over_in_arrival_order_and_forget_cancelled_waiters():
    async def run():
        slots, order = Slots(1, queue=3, wait=5), []
        first = await slots.take()

        async def waiter(name):
            slot = await slots.take()
            order.append(name)
            await asyncio.sleep(0.01)
            slot.release()

        tasks = [asyncio.create_task(waiter(n)) for n in "abc"]
        await asyncio.sleep(0.01)
        assert slots.stats()["waiting"] == 3
        with pytest.raises(ApiError) as full:  # a fourth waiter finds the queue full
            await slots.take()
        tasks[1].cancel()  # b gives up while waiting: its place is dropped, nothing leaks
        await asyncio.sleep(0.01)
        assert slots.stats()["waiting"] == 2
        threading.Thread(target=first.release).start()  # release from a worker thread reaches the loop
        await asyncio.gather(tasks[0], tasks[2])
        return order, slots.stats(), full.value

    order, stats, full = asyncio.run(run())
    assert order == ["a", "c"]
    assert (full.status, full.headers["Retry-After"], full.code) == (503, "1", "server_busy")
    assert "all 1 streams are busy and 3 requests already wait" in full.message
    assert (stats["active"], stats["waiting"], stats["started"], stats["refused"]) == (0, 0, 3, 1)


def test_a_slot_freed_as_the_wait_runs_out_is_not_lost():
    async def run():
        slots = Slots(1, queue=1, wait=0.05)
        held = await slots.take()
        asyncio.get_running_loop().call_later(0.05, held.release)  # about when the waiter gives up
        try:
            (await slots.take()).release()
        except ApiError:
            pass
        return slots.stats()

    for _ in range(20):
        stats = asyncio.run(run())
        assert (stats["active"], stats["waiting"]) == (0, 0), stats


def test_waiters_are_served_in_turn_and_a_full_queue_is_a_503(tiny_dir, tmp_path):
    with api_server([tiny_dir], max_streams=1, max_queue=2, queue_timeout=60, voices_dir=tmp_path) as port:
        solo = {t: speech(port, **BODY, input=t)[2] for t in ("Second.", "Third.")}
        holder = _slow_stream(port)  # takes the one slot and keeps it (400 frames, never read)
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(speech, port, **BODY, input=t) for t in ("Second.", "Third.")]
            wait_for(lambda: health(port)["streams"]["waiting"] == 2, timeout=30)
            t = time.perf_counter()
            status, headers, body = speech(port, **BODY, input="Fourth.")
            refused_s = time.perf_counter() - t
            err = json.loads(body)["error"]
            assert (status, headers["Retry-After"], err["code"]) == (503, "1", "server_busy")
            assert "all 1 streams are busy and 2 requests already wait" in err["message"]
            assert refused_s < 1.0  # refused at once, not after a wait
            time.sleep(0.5)
            assert not any(f.done() for f in waiting)  # still waiting while the slot is held
            holder.close()
            results = [f.result(timeout=60) for f in waiting]
        assert [r[0] for r in results] == [200, 200]
        assert [r[2] for r in results] == [solo["Second."], solo["Third."]]  # each its own audio
        stats = health(port)["streams"]
        assert (stats["active"], stats["waiting"], stats["refused"], stats["timed_out"]) == (0, 0, 1, 0)
        assert stats["longest_wait_s"] >= 0.5


def test_a_waiter_whose_wait_runs_out_gets_a_503(tiny_dir, tmp_path):
    with api_server([tiny_dir], max_streams=1, max_queue=2, queue_timeout=0.5, voices_dir=tmp_path) as port:
        speech(port, **BODY, input="Load the model.")
        holder = _slow_stream(port)
        try:
            t = time.perf_counter()
            status, headers, body = speech(port, **BODY, input="Too late.")
            waited = time.perf_counter() - t
        finally:
            holder.close()
        err = json.loads(body)["error"]
        assert (status, headers["Retry-After"], err["code"]) == (503, "1", "server_busy")
        assert "stayed busy for 0.5 s" in err["message"]
        assert 0.5 <= waited < 2.0, waited
        wait_for(lambda: health(port)["streams"]["active"] == 0, timeout=5)
        stats = health(port)["streams"]
        assert (stats["waiting"], stats["refused"], stats["timed_out"]) == (0, 1, 1)
        assert speech(port, **BODY, input="Room again.")[0] == 200


def test_websocket_sessions_share_the_slots_and_the_queue(tiny_dir, tmp_path):
    with api_server([tiny_dir], max_streams=1, max_queue=1, queue_timeout=60, voices_dir=tmp_path) as port:
        with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"  # the session holds the slot
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(speech, port, **BODY, input="After the session.")
                wait_for(lambda: health(port)["streams"]["waiting"] == 1, timeout=30)
                with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as third:
                    third.send(json.dumps({"type": "start"}))  # the queue (1) is full: refused
                    assert json.loads(third.recv(timeout=10))["error"]["code"] == "server_busy"
                    with pytest.raises(Exception, match="1013"):
                        third.recv(timeout=10)
                time.sleep(0.3)
                assert not waiting.done()
                ws.close()
                assert waiting.result(timeout=60)[0] == 200
        holder = _slow_stream(port)  # and a session waits for an HTTP stream's slot
        with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start"}))
            wait_for(lambda: health(port)["streams"]["waiting"] == 1, timeout=30)
            holder.close()
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        wait_for(lambda: health(port)["streams"]["active"] == 0, timeout=5)
