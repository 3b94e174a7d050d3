#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/corpus/<target>/) from the repository's own
fixtures, framed the way each target reads its input. Run again when fixtures change:

    python3 fuzz/seed.py

Sources: example-state-repo/ and tests/fixtures/ (state files), the JUnit report of the
lab's unit tests, Slack and GitHub payloads in the shapes of ../shared/fixtures/real-payloads
(taken from there when present), OpenCode events and histories in the shapes gaffer reads.
"""
import hashlib
import json
import pathlib
import re
import shutil
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"
SHARED = ROOT.parent / "shared" / "fixtures" / "real-payloads"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def state_files():
    every = []
    for base in [ROOT / "example-state-repo", *sorted((ROOT / "tests" / "fixtures" / "invalid").iterdir())]:
        if not base.is_dir():
            continue
        files = []
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 16 * 1024:
                rel = p.relative_to(base).as_posix()
                if rel == "README.md":
                    continue
                chunk = rel.encode() + b"\n" + p.read_bytes()
                put("state_files", chunk)
                files.append(chunk)
        if files:
            put("state_files", b"\0".join(files))
            every += files
    return every


def question_doc():
    q = ["\x00", "Which algorithm should sign the tokens?", "Signing",
         "RS256 (Recommended)", "asymmetric", "HS256", "shared secret"]
    put("question_doc", "\0".join(q))
    put("question_doc", "\0".join(["\x03", "Pick any:\n[x] A", "Multi\n## q-009",
                                     "A — B", "", "A", "first\nDetails: x"]))
    doc = ("# Questions\n\n## q-001 · Signing\n\n> Which?\n\nDeadline: none\n\n"
           "• [x] HS256 — shared secret\n• [ ] RS256 (Recommended)\n\nDetails: because\n"
           "## q-002\n- [X] A\n* [x] B\nDetails:\nfree text\n")
    put("question_doc", "\0".join(q + [doc]))


def form(d):
    return urllib.parse.urlencode(d)


def slack():
    head = lambda route, ct: bytes([route]) + f"{ct}\n1700000000\nv0=00\n".encode()
    FORM = "application/x-www-form-urlencoded"
    payloads = {}
    if SHARED.is_dir():
        for p in sorted((SHARED / "slack").glob("*")):
            payloads[p.name] = p.read_bytes()
    # gaffer's own buttons and forms, in Slack's shapes.
    task = "demo/web-api/sig1"
    clicks = {
        "type": "block_actions", "user": {"id": "U1"}, "trigger_id": "t",
        "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1"},
        "channel": {"id": "C1"},
        "actions": [{"action_id": f"answer:{task}:q-001:1", "block_id": "b", "type": "button"},
                    {"action_id": f"other:{task}:q-002", "type": "button"},
                    {"action_id": f"change:{task}:q-003", "type": "button"},
                    {"action_id": f"approve:{task}:r1-abc", "type": "button"},
                    {"action_id": "category", "selected_option": {"value": "demo"}}],
        "view": {"private_metadata": "C1"},
    }
    submit = {
        "type": "view_submission", "user": {"id": "U1"},
        "view": {"callback_id": "gaffer_answer",
                 "private_metadata": json.dumps({"task": task, "qid": "q-001", "channel": "C1", "ts": "1.2"}),
                 "state": {"values": {"choice": {"choice": {"selected_option": {"value": "1"}}},
                                      "text": {"text": {"value": "because"}}}}},
    }
    interactions = [clicks, submit]
    for name, body in payloads.items():
        if name.endswith(".form"):
            put("slack", head(0, FORM) + body)
        elif name.endswith(".json") and not name.endswith("headers.json"):
            try:
                v = json.loads(body)
            except ValueError:
                continue
            if v.get("type") in ("block_actions", "view_submission", "view_closed", "shortcut", "block_suggestion"):
                interactions.append(v)
            else:
                put("slack", head(2, "application/json") + body)
    put("slack", head(0, FORM) + form({"command": "/opencode", "text": "start demo/web-api",
                                        "user_id": "U1", "channel_id": "C1", "trigger_id": "t"}).encode())
    put("slack", head(0, FORM) + b"ssl_check=1&token=x")
    put("slack", head(2, "application/json; charset=utf-8") + b'{"type":"url_verification","challenge":"c"}')
    for v in interactions:
        put("slack", head(1, FORM + "; charset=utf-8") + form({"payload": json.dumps(v)}).encode())
        put("slack", bytes([3]) + json.dumps({"envelope_id": "e1", "type": "interactive",
                                               "accepts_response_payload": True, "payload": v}).encode())
    put("slack", bytes([3]) + json.dumps({"envelope_id": "e2", "type": "slash_commands", "accepts_response_payload": True,
        "payload": {"command": "/opencode", "text": "status", "user_id": "U1", "channel_id": "C1",
                    "team_id": "T1", "trigger_id": "t", "response_url": "https://hooks.slack.com/x"}}).encode())
    put("slack", bytes([3]) + b'{"type":"hello","num_connections":1,"connection_info":{"app_id":"A1"},"debug_info":{"host":"h"}}')
    put("slack", bytes([3]) + b'{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"h"}}')


def github():
    bodies = {}
    if SHARED.is_dir():
        for p in sorted((SHARED / "github").glob("*")):
            if p.name.endswith("headers.json"):
                continue
            bodies[p.name] = p.read_bytes()
    bodies.setdefault("pr", json.dumps({"action": "opened", "number": 7,
        "pull_request": {"number": 7, "head": {"sha": "a" * 40}}, "repository": {"full_name": "me/api"}}).encode())
    for name, body in bodies.items():
        event = re.sub(r"_(opened|closed|synchronize|dismissed|submitted|with-app_id)?\.?payload.*|_payload.*", "", name)
        event = event if event in ("ping", "push", "pull_request", "pull_request_review") else "pull_request"
        put("github", f"application/json\n{event}\n".encode() + body)
        put("github", f"application/x-www-form-urlencoded\n{event}\n".encode()
            + form({"payload": body.decode("utf-8", "replace")}).encode())
    put("github", b"text/plain\npush\n{}")


def opencode():
    events = [
        {"type": "session.status", "properties": {"sessionID": "ses_1", "status": {"type": "busy"}}},
        {"type": "message.updated", "properties": {"info": {"id": "msg_1", "sessionID": "ses_1", "role": "assistant",
                                                           "time": {"created": 1, "completed": 2}}}},
        {"type": "message.part.updated", "properties": {"part": {"type": "tool", "tool": "write", "sessionID": "ses_1",
                                                                "callID": "c1", "state": {"status": "completed",
                                                                "input": {"filePath": "/w/repos/api/a.txt"}}}}},
        {"type": "question.asked", "properties": {"id": "que_1", "sessionID": "ses_1", "questions": [
            {"question": "Which?", "header": "H", "options": [{"label": "A (Recommended)", "description": "a"}]}]}},
        {"type": "todo.updated", "properties": {"sessionID": "ses_1", "todos": [{"content": "x", "status": "completed"}]}},
        {"type": "session.idle", "properties": {"sessionID": "ses_1"}},
    ]
    stream = "".join(f"event: message\ndata: {json.dumps(e)}\n\n" for e in events)
    put("opencode", b"\x00" + stream.encode())
    put("opencode", b"\x00" + stream.replace("\n\n", "\r\n\r\n").encode())
    cut = stream.encode()
    put("opencode", b"\x00" + b"\x00".join(cut[i:i + 37] for i in range(0, len(cut), 37)))
    history = [
        {"info": {"id": "msg_1", "role": "user", "time": {"created": 1}},
         "parts": [{"type": "text", "text": "<!-- gaffer:prompt task -->\n# Task"}]},
        {"info": {"id": "msg_2", "role": "assistant", "time": {"created": 2, "completed": 3}},
         "parts": [{"type": "tool", "tool": "question", "callID": "c1",
                    "state": {"status": "completed", "input": {"questions": [{"question": "Which one?"}]},
                              "output": "User has answered your questions: \"Which one?\"=\"A\""}},
                   {"type": "tool", "tool": "edit", "callID": "c2",
                    "state": {"status": "completed", "input": {"filePath": "/w/repos/api/x.py"}}},
                   {"type": "text", "text": "All set.\nDONE: it works"}]},
        {"info": {"id": "msg_3", "role": "assistant", "time": {"created": 4},
                  "error": {"name": "MessageAbortedError", "data": {}}}, "parts": []},
    ]
    for kind in (1, 3, 5, 7):
        put("opencode", bytes([kind]) + json.dumps(history).encode())


def junit():
    src = (ROOT / "src" / "lab" / "junit" / "tests.rs").read_text()
    for m in re.finditer(r'r#"(<\?xml.*?|<testsuite.*?)"#', src, re.S):
        put("junit", m.group(1))
    put("junit", '<testsuite name="s"><testcase name="a b"><failure message="x: y&#10;- z">'
                 "out: [x] HS256\n## q-001</failure></testcase></testsuite>")


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    state_files()
    question_doc()
    slack()
    github()
    opencode()
    junit()
    for d in sorted(OUT.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")
