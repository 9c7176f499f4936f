#!/usr/bin/env python3
"""Run a command on a new pseudo-terminal, as a shell runs a foreground job.

usage: pty_run.py SCREEN COMMAND [ARGS...]

The command is the session leader of a new session whose controlling
terminal is the pseudo-terminal, in its own process group, which is the
terminal's foreground group: a control character typed on the terminal
(Ctrl-C, Ctrl-Z, Ctrl-\\) makes the kernel's line discipline send its signal
to that group, as when a person types it.

Everything the terminal shows is appended to the file SCREEN. Lines read on
stdin are orders:
  type HEX   write these bytes (hex-encoded) to the terminal, as if typed
When the command exits, this prints `exit N` or `signal N` on stdout and
exits; a closed stdin changes nothing.
"""

import os
import pty
import select
import signal
import sys


def main():
    screen_path = sys.argv[1]
    argv = sys.argv[2:]
    pid, master = pty.fork()
    if pid == 0:
        # Python ignores SIGPIPE, and an ignored signal stays ignored
        # across exec: the command gets the default of every signal.
        for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    screen = open(screen_path, "ab", buffering=0)
    stdin = sys.stdin.fileno()
    watch = [master, stdin]
    pending = b""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            # What the command wrote last is still to be read.
            drain(master, screen)
            if os.WIFSIGNALED(status):
                print("signal %d" % os.WTERMSIG(status), flush=True)
            else:
                print("exit %d" % os.WEXITSTATUS(status), flush=True)
            return
        readable, _, _ = select.select(watch, [], [], 0.05)
        if master in readable:
            try:
                data = os.read(master, 4096)
            except OSError:
                data = b""
            if data:
                screen.write(data)
            else:
                # Nobody holds the terminal open any more.
                watch.remove(master)
        if stdin in readable:
            data = os.read(stdin, 4096)
            if not data:
                watch.remove(stdin)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                order = line.decode().split()
                if len(order) == 2 and order[0] == "type":
                    os.write(master, bytes.fromhex(order[1]))


def drain(master, screen):
    while True:
        readable, _, _ = select.select([master], [], [], 0.1)
        if not readable:
            return
        try:
            data = os.read(master, 4096)
        except OSError:
            return
        if not data:
            return
        screen.write(data)


if __name__ == "__main__":
    main()
