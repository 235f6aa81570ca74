#!/usr/bin/env python3
"""`vksd serve` driven over real HTTP (Python's urllib, raw sockets), as an A1111 client would.

Usage: server_test.py PATH/TO/vksd [WORKDIR]

Starts the server with the demo model on a free loopback port and checks: the A1111 listing
endpoints; txt2img returns a PNG whose pixels equal `vksd generate` with the same settings and
that carries the same `parameters` text; /progress polled during a run shows a live preview;
/interrupt stops a run at the next step; bad requests get 4xx naming the field; the server
survives a client that disconnects mid-job; concurrent clients queue (and a full queue is 503);
--api-key is enforced. Any Vulkan validation message in the server's output fails the test.
"""
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from png_read import read_png  # noqa: E402

VKSD = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="vksd_server_test_"))
os.makedirs(WORK, exist_ok=True)
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


# ---- HTTP ------------------------------------------------------------------------------------
BASE = None


def call(method, path, body=None, headers=None, timeout=600):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def start_server(*flags):
    log = open(os.path.join(WORK, "server_%d.log" % len(servers)), "w+")
    proc = subprocess.Popen([VKSD, "serve", "--port", "0", *flags], stdout=log, stderr=subprocess.STDOUT)
    servers.append((proc, log))
    deadline = time.time() + 600
    while time.time() < deadline:
        log.seek(0)
        m = re.search(r"listening on http://([0-9.]+):(\d+)", log.read())
        if m:
            return "http://%s:%s" % (m.group(1), m.group(2))
        if proc.poll() is not None:
            log.seek(0)
            sys.exit("server exited early:\n" + log.read())
        time.sleep(0.1)
    sys.exit("server did not start")


servers = []


def wait_running(min_step=1, timeout=300):
    """Polls /progress until a job is at least at sampling step min_step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, p = call("GET", "/sdapi/v1/progress?skip_current_image=true")
        if p["state"]["job_count"] > 0 and p["state"]["sampling_step"] >= min_step:
            return p
        time.sleep(0.02)
    raise RuntimeError("no job started")


def in_thread(fn, *args):
    box = {}

    def target():
        try:
            box["r"] = fn(*args)
        except OSError as e:  # the connection itself failed
            box["r"] = ("connection error", str(e))
    t = threading.Thread(target=target)
    t.start()
    return t, box


def main():
    global BASE
    BASE = start_server("--queue", "2")

    # ---- listings ----
    st, models = call("GET", "/sdapi/v1/sd-models")
    check(st == 200 and len(models) == 1 and models[0]["filename"].endswith("model.safetensors"), "sd-models lists the loaded model")
    st, samplers = call("GET", "/sdapi/v1/samplers")
    names = [s["name"] for s in samplers]
    check(st == 200 and "Euler a" in names and "DDIM" in names and "DPM++ 2M Karras" in names, "samplers: A1111 names " + str(names))
    for path in ("upscalers", "sd-vae", "loras", "prompt-styles", "hypernetworks", "face-restorers"):
        st, lst = call("GET", "/sdapi/v1/" + path)
        check(st == 200 and lst == [], "GET /sdapi/v1/%s: an empty list (vksd has none)" % path)
    st, sch = call("GET", "/sdapi/v1/schedulers")
    check(st == 200 and [s["label"] for s in sch] == ["Automatic", "Karras"], "schedulers")
    st, opts = call("GET", "/sdapi/v1/options")
    check(st == 200 and opts["sd_model_checkpoint"] == models[0]["title"] and opts["CLIP_stop_at_last_layers"] == 1, "options")

    # ---- txt2img == vksd generate, pixel for pixel, with the same parameters text ----
    req = {"prompt": "red apple", "negative_prompt": "blurry", "steps": 3, "sampler_name": "DDIM", "cfg_scale": 5,
           "seed": 42, "width": 64, "height": 64, "batch_size": 2, "n_iter": 1, "some_unknown_field": [1, 2]}
    st, r = call("POST", "/sdapi/v1/txt2img", req)
    check(st == 200 and len(r["images"]) == 2, "txt2img: 200 with batch_size images (%s)" % st)
    info = json.loads(r["info"])
    check(info["all_seeds"] == [42, 43] and info["seed"] == 42 and info["sampler_name"] == "DDIM", "info: seeds and sampler")
    check(r["parameters"]["prompt"] == "red apple" and r["parameters"]["steps"] == 3, "parameters echo the request")
    # One CLI run with --batch-count 2 writes cli_0.png (seed 42) and cli_1.png (seed 43).
    subprocess.run([VKSD, "generate", "-p", "red apple", "-n", "blurry", "--steps", "3", "--sampler", "ddim",
                    "--cfg-scale", "5", "--seed", "42", "-W", "64", "-H", "64", "--batch-count", "2",
                    "-o", os.path.join(WORK, "cli.png")], check=True, capture_output=True)
    for i, seed in enumerate([42, 43]):
        out = os.path.join(WORK, "cli_%d.png" % i)
        sw, sh, sc, spx, stext = read_png(base64.b64decode(r["images"][i]))
        cw, chh, cc, cpx, ctext = read_png(open(out, "rb").read())
        check((sw, sh, sc) == (cw, chh, cc) == (64, 64, 3), "image %d is 64x64 RGB" % i)
        check(spx == cpx, "image %d: pixels equal vksd generate --seed %d" % (i, seed))
        check(stext.get("parameters") == ctext.get("parameters") == info["infotexts"][i] and "Seed: %d" % seed in stext["parameters"],
              "image %d: the A1111 parameters chunk equals vksd generate's and info.infotexts" % i)

    # ---- img2img with a mask: the kept half stays close to the init image ----
    init_b64 = r["images"][0]
    mask = bytearray(b"\x89PNG\r\n\x1a\n")
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    rows = b"".join(b"\0" + bytes([255 if x >= 32 else 0 for x in range(64)]) for _ in range(64))
    mask += chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    st, r2 = call("POST", "/sdapi/v1/img2img", {"prompt": "green apple", "init_images": ["data:image/png;base64," + init_b64],
                                                "mask": base64.b64encode(bytes(mask)).decode(), "denoising_strength": 0.6,
                                                "steps": 4, "sampler_name": "Euler", "seed": 7})
    check(st == 200 and len(r2["images"]) == 1, "img2img with init_images and mask: 200 (%s %s)" % (st, r2 if st != 200 else ""))
    if st == 200:
        _, _, _, a, _ = read_png(base64.b64decode(init_b64))
        _, _, _, b, t2 = read_png(base64.b64decode(r2["images"][0]))
        left = [abs(a[(y * 64 + x) * 3 + c] - b[(y * 64 + x) * 3 + c]) for y in range(64) for x in range(24) for c in range(3)]
        right = [abs(a[(y * 64 + x) * 3 + c] - b[(y * 64 + x) * 3 + c]) for y in range(64) for x in range(40, 64) for c in range(3)]
        check(sum(left) / len(left) < sum(right) / len(right), "img2img: the kept (black) half changed less than the repainted half (%.1f < %.1f)"
              % (sum(left) / len(left), sum(right) / len(right)))
        check("Denoising strength: 0.6" in t2.get("parameters", ""), "img2img parameters carry the denoising strength")

    # ---- img2img with an init image and a mask of other sizes: fitted like vksd generate fits them ----
    # The 64x64 init image and a 32x32 mask, made 128x64 by resize_mode 1 (crop and resize):
    # the same pixels as `vksd generate --init-img ... --mask ... -W 128 -H 64 --resize-mode crop`.
    small_rows = b"".join(b"\0" + bytes([255 if x >= 16 else 0 for x in range(32)]) for _ in range(32))
    small_mask = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0)) +
                  chunk(b"IDAT", zlib.compress(small_rows)) + chunk(b"IEND", b""))
    init_path, mask_path = os.path.join(WORK, "init64.png"), os.path.join(WORK, "mask32.png")
    open(init_path, "wb").write(base64.b64decode(init_b64))
    open(mask_path, "wb").write(small_mask)
    st, r3 = call("POST", "/sdapi/v1/img2img", {"prompt": "green apple", "init_images": [init_b64], "width": 128, "height": 64,
                                                "resize_mode": 1, "mask": base64.b64encode(small_mask).decode(),
                                                "denoising_strength": 0.6, "steps": 4, "sampler_name": "Euler", "cfg_scale": 7,
                                                "seed": 7})
    check(st == 200 and len(r3["images"]) == 1, "img2img with a 64x64 init image and a 32x32 mask at 128x64: 200, not 422 (%s %s)"
          % (st, r3 if st != 200 else ""))
    if st == 200:
        out3 = os.path.join(WORK, "cli_fit.png")
        subprocess.run([VKSD, "generate", "-p", "green apple", "--init-img", init_path, "--mask", mask_path, "-W", "128", "-H", "64",
                        "--resize-mode", "crop", "--strength", "0.6", "--steps", "4", "--sampler", "euler", "--cfg-scale", "7",
                        "--seed", "7", "-o", out3], check=True, capture_output=True)
        sw, sh, _, spx, _ = read_png(base64.b64decode(r3["images"][0]))
        cw, chh, _, cpx, _ = read_png(open(out3, "rb").read())
        check((sw, sh) == (cw, chh) == (128, 64), "fitted img2img is 128x64 (%dx%d, CLI %dx%d)" % (sw, sh, cw, chh))
        check(spx == cpx, "fitted img2img: pixels equal vksd generate's with --resize-mode crop")

    # ---- bad requests: 4xx naming the field ----
    for body, field in [({"steps": "many"}, "steps"), ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
                        ({"width": 65}, "width"), ({"height": -64}, "height"), ({"cfg_scale": "x"}, "cfg_scale"),
                        ({"sampler_name": "Nope"}, "sampler_name"), ({"prompt": 5}, "prompt"), ({"seed": "x"}, "seed"),
                        ({"batch_size": 0}, "batch_size"), ({"n_iter": True}, "n_iter"),
                        ({"sampler_name": "Euler", "scheduler": "Karras"}, "scheduler")]:
        st, e = call("POST", "/sdapi/v1/txt2img", body)
        check(st == 422 and e.get("field") == field and field in e.get("detail", ""), "txt2img %s -> 422 naming %s (%s %s)" % (body, field, st, e))
    # A 4x4 picture is refused (smaller than one latent pixel), as by vksd generate.
    tiny_b64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)) +
                                chunk(b"IDAT", zlib.compress(b"\0\0\0\0\0" * 4)) + chunk(b"IEND", b"")).decode()
    for body, field in [({"prompt": "x"}, "init_images"), ({"init_images": ["!!notbase64"]}, "init_images"),
                        ({"init_images": [base64.b64encode(b"not an image").decode()]}, "init_images"),
                        ({"init_images": [init_b64], "denoising_strength": 1.5}, "denoising_strength"),
                        ({"init_images": [init_b64], "resize_mode": 3}, "resize_mode"),
                        ({"init_images": [tiny_b64], "width": 64, "height": 64}, "init_images")]:
        st, e = call("POST", "/sdapi/v1/img2img", body)
        check(st == 422 and e.get("field") == field, "img2img %s... -> 422 naming %s (%s %s)" % (str(body)[:40], field, st, e))
    st, e = call("POST", "/sdapi/v1/txt2img", b"{not json")
    check(st == 400 and e.get("field") == "body", "invalid JSON -> 400 (%s)" % st)
    st, e = call("POST", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 0})
    check(st == 422 and e.get("field") == "CLIP_stop_at_last_layers", "options: bad CLIP_stop_at_last_layers -> 422")
    st, e = call("GET", "/sdapi/v1/nothing")
    check(st == 404, "unknown path -> 404")

    # ---- progress during a run shows a live preview ----
    t, box = in_thread(call, "POST", "/sdapi/v1/txt2img", {"prompt": "dog face", "steps": 6, "n_iter": 2, "seed": 1, "sampler_name": "Euler"})
    seen, fractions = None, []
    while t.is_alive():
        st, p = call("GET", "/sdapi/v1/progress")
        if p["state"]["job_count"]:
            fractions.append(p["progress"])
        if p.get("current_image") and seen is None:
            seen = p
        time.sleep(0.05)
    t.join()
    check(box["r"][0] == 200 and len(box["r"][1]["images"]) == 2, "the watched run finished")
    check(seen is not None, "progress showed current_image while the job ran")
    if seen:
        w, h, c, px, _ = read_png(base64.b64decode(seen["current_image"]))
        check((w, h) == (64, 64) and len(set(px)) > 8, "the preview is a 64x64 image with content")
        check(0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 6 and seen["eta_relative"] >= 0,
              "progress fraction, step count and eta while running (%s)" % {k: seen[k] for k in ("progress", "eta_relative")})
    check(fractions == sorted(fractions) and len(fractions) >= 3, "progress never goes backwards (%d polls)" % len(fractions))
    _, p = call("GET", "/sdapi/v1/progress")
    check(p["state"]["job_count"] == 0 and p["current_image"] is None, "idle progress after the run")

    # ---- interrupt stops at the next step ----
    t, box = in_thread(call, "POST", "/sdapi/v1/txt2img", {"prompt": "cat", "steps": 1000, "n_iter": 3, "sampler_name": "Euler"})
    wait_running(2)
    t0 = time.time()
    st, _ = call("POST", "/sdapi/v1/interrupt")
    t.join()
    st2, r = box["r"]
    info = json.loads(r["info"]) if st2 == 200 else {}
    check(st == 200 and st2 == 200 and r["images"] == [] and info.get("interrupted") is True,
          "interrupt: the request ends with no images and info.interrupted (%s)" % st2)
    check(time.time() - t0 < 120, "interrupt took effect within %.1f s (3 x 1000 steps would take an hour)" % (time.time() - t0))

    # ---- a client disconnecting mid-job does not stop the server ----
    host, port = BASE[7:].split(":")
    body = json.dumps({"prompt": "tree", "steps": 5, "sampler_name": "Euler"}).encode()
    s = socket.create_connection((host, int(port)))
    s.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    wait_running(1)
    s.close()
    st, r = call("POST", "/sdapi/v1/txt2img", {"prompt": "tree", "steps": 2, "seed": 3})
    check(st == 200 and len(r["images"]) == 1, "after a client vanished mid-job the next request is served")
    check(servers[0][0].poll() is None, "the server is still running")

    # ---- concurrent clients queue; beyond --queue 2 they get 503 ----
    t_long, box_long = in_thread(call, "POST", "/sdapi/v1/txt2img", {"prompt": "car", "steps": 1000, "sampler_name": "Euler"})
    wait_running(1)
    threads = [in_thread(call, "POST", "/sdapi/v1/txt2img", {"prompt": "house", "steps": 2, "seed": 100 + i, "sampler_name": "Euler"})
               for i in range(4)]
    deadline = time.time() + 120
    while time.time() < deadline and sum(1 for th, _ in threads if not th.is_alive()) < 2:
        time.sleep(0.05)
    done = [b["r"] for th, b in threads if not th.is_alive()]
    check(len(done) == 2 and all(r[0] == 503 for r in done), "with one running and 2 waiting, 2 more get 503 at once (%s)" % [r[0] for r in done])
    call("POST", "/sdapi/v1/interrupt")
    t_long.join()
    for th, _ in threads:
        th.join()
    ok = [b["r"] for _, b in threads if b["r"][0] == 200]
    seeds = sorted(json.loads(r[1]["info"])["seed"] for r in ok)
    check(len(ok) == 2 and all(len(r[1]["images"]) == 1 for r in ok), "the 2 queued requests were served after the running one (%s)" % seeds)

    # ---- options: switching the model (the demo model again, under another path) ----
    st, e = call("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "/no/such/model.safetensors"})
    check(st == 422 and e.get("field") == "sd_model_checkpoint", "options: a model that does not exist -> 422")
    st, _ = call("POST", "/sdapi/v1/options", {"sd_model_checkpoint": models[0]["title"]})
    check(st == 200, "options: the loaded model's title is accepted as is")
    demo_dir = os.path.dirname(models[0]["filename"])
    link = os.path.join(WORK, "other_model")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(demo_dir, link)
    st, _ = call("POST", "/sdapi/v1/options", {"sd_model_checkpoint": os.path.join(link, "model.safetensors")})
    _, now = call("GET", "/sdapi/v1/sd-models")
    check(st == 200 and now[0]["filename"] == os.path.join(link, "model.safetensors"), "options: sd_model_checkpoint loads another checkpoint (%s)" % now)

    # ---- options: clip skip is used by later requests ----
    st, _ = call("POST", "/sdapi/v1/options", {"CLIP_stop_at_last_layers": 2, "unknown_option": 1})
    st2, r = call("POST", "/sdapi/v1/txt2img", {"prompt": "red apple", "steps": 1, "seed": 5})
    check(st == 200 and st2 == 200 and json.loads(r["info"])["clip_skip"] == 2 and "Clip skip: 2" in json.loads(r["info"])["infotexts"][0],
          "POST options CLIP_stop_at_last_layers applies to the next txt2img")

    # ---- SIGTERM during a job: it is interrupted, a request in line gets 503, the server exits ----
    t_long, box_long = in_thread(call, "POST", "/sdapi/v1/txt2img", {"prompt": "car", "steps": 1000, "sampler_name": "Euler"})
    wait_running(1)
    t_q, box_q = in_thread(call, "POST", "/sdapi/v1/txt2img", {"prompt": "house", "steps": 2})
    time.sleep(1)  # let it get in line
    t0 = time.time()
    servers[0][0].terminate()
    code = servers[0][0].wait(timeout=300)
    t_long.join()
    t_q.join()
    check(code == 0 and time.time() - t0 < 120, "SIGTERM mid-job: the server exits (code %s) in %.1f s" % (code, time.time() - t0))
    st, r = box_long["r"]
    check(st == 200 and json.loads(r["info"])["interrupted"] is True and r["images"] == [],
          "SIGTERM mid-job: the running request is answered, interrupted (%s)" % st)
    check(box_q["r"][0] == 503, "SIGTERM mid-job: the request in line gets 503 (%s)" % (box_q["r"],))

    # ---- --api-key ----
    BASE = start_server("--api-key", "s3cret")
    st, e = call("GET", "/sdapi/v1/options")
    check(st == 401 and "API key" in e["detail"], "--api-key: a request without the key gets 401")
    st, _ = call("GET", "/sdapi/v1/options", headers={"Authorization": "Bearer wrong"})
    check(st == 401, "--api-key: a wrong key gets 401")
    st, _ = call("GET", "/sdapi/v1/options", headers={"X-API-Key": "s3cret"})
    st2, _ = call("GET", "/sdapi/v1/options", headers={"Authorization": "Bearer s3cret"})
    check(st == 200 and st2 == 200, "--api-key: X-API-Key and Authorization: Bearer both work")


try:
    main()
finally:
    for proc, log in servers:
        proc.terminate()
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed"
        log.seek(0)
        text = log.read()
        check(code == 0, "server stopped cleanly on SIGTERM (exit %s)" % code)
        check("[vulkan validation]" not in text, "no Vulkan validation message in the server's output")
        if failures:
            print("---- server log ----\n" + text[-4000:])
if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all server checks passed")
