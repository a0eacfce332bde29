"""Runs `eventyard top` in a real pseudo-terminal (pexpect) and reads its screen back through a
terminal emulator (pyte), as a person at that terminal would see it.

Usage: top_screen.py EVENTYARD_BINARY URL TOKEN NEEDLE [SECONDS]

Waits until a screen line holds NEEDLE (a regular expression) and prints the whole screen as JSON
({"lines": [...], "matched": line}); exits 1 with the last screen if it never does. Quits `top`
with `q` and checks it gives the terminal back."""

import json
import re
import sys
import time

import pexpect
import pyte

ROWS, COLUMNS = 40, 150


def main():
    binary, url, token, needle = sys.argv[1:5]
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 30
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    top = pexpect.spawn(
        binary,
        ["top", "--url", url, "--token", token, "--interval-ms", "300"],
        dimensions=(ROWS, COLUMNS),
        env={"TERM": "xterm-256color", "PATH": "/usr/bin:/bin"},
    )
    pattern = re.compile(needle)
    deadline = time.time() + seconds
    matched = None
    while time.time() < deadline and matched is None:
        try:
            stream.feed(top.read_nonblocking(65536, timeout=0.5))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            break
        matched = next((line for line in screen.display if pattern.search(line)), None)
    lines = [line.rstrip() for line in screen.display]
    if top.isalive():
        top.send("q")
        top.expect(pexpect.EOF, timeout=10)
    top.close()
    print(json.dumps({"lines": lines, "matched": matched, "exit": top.exitstatus}))
    sys.exit(0 if matched is not None else 1)


if __name__ == "__main__":
    main()
