"""Errors the frontend raises, with the user's source line attached."""
from __future__ import annotations

import os


class FrontendError(Exception):
    """The model cannot be brought into xrec IR; the message says where and what to do."""


def user_source_line(fx_node) -> str:
    """The innermost frame of ``fx_node``'s stack trace outside torch itself, as 'file:line: code'."""
    trace = fx_node.meta.get("stack_trace") or ""
    frames = []
    lines = trace.splitlines()
    for k, line in enumerate(lines):
        s = line.strip()
        if s.startswith('File "'):
            try:
                path = s.split('"')[1]
                lineno = int(s.split(", line ")[1].split(",")[0])
            except (IndexError, ValueError):
                continue
            code = lines[k + 1].strip() if k + 1 < len(lines) else ""
            frames.append((path, lineno, code))
    torch_dir = os.sep + "torch" + os.sep
    for path, lineno, code in reversed(frames):
        if torch_dir not in path:
            return f"{path}:{lineno}: {code}"
    if frames:
        path, lineno, code = frames[-1]
        return f"{path}:{lineno}: {code}"
    return "<unknown source line>"
