#!/usr/bin/env python3
"""The documentation check of `make test` (fast, no training).

Fails, naming the file and line, when
  - a relative link or image in a tracked Markdown file does not resolve (a file, and for
    `page.md#anchor` a heading of that page);
  - a `distillery SUBCOMMAND --option` shown in code names a subcommand or option that
    `distillery SUBCOMMAND --help` does not list, or `--set KEY=...` a key the config schema lacks;
  - a generated page is stale (`distillery results --check`);
  - tracked text refers to how the project was worked on (numbered work periods).

Usage: docs_check.py DISTILLERY_BINARY REPOSITORY_ROOT
"""
import os
import re
import subprocess
import sys

binary, root = sys.argv[1], sys.argv[2]
failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")


def tracked(*patterns):
    out = subprocess.run(["git", "-C", root, "ls-files", "--", *patterns], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def slug(heading):
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]|\[|\]|\(.*?\)", lambda m: "" if m.group(0)[0] != "(" else "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    result, in_fence = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            result.add(slug(line.lstrip("#")))
    return result


markdown = tracked("*.md")

# 1. Links and images.
link = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
for page in markdown:
    in_fence = False
    for number, line in enumerate(open(os.path.join(root, page), encoding="utf-8"), 1):
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence:
            continue
        for target in link.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(root, os.path.dirname(page), path)) if path else os.path.join(root, page)
            if not os.path.exists(resolved):
                fail(f"{page}:{number}", f"link to '{target}': no such file")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                fail(f"{page}:{number}", f"link to '{target}': no heading with that anchor")

# 2. Commands shown in code.
def help_text(*args):
    out = subprocess.run([binary, *args, "--help"], capture_output=True, text=True)
    return out.stdout


top_help = help_text()
subcommands = set(re.findall(r"^  ([a-z][a-z0-9-]*)\s{2,}", top_help.split("Subcommands:")[-1], re.M))
options = {}
for sub in subcommands:
    text = help_text(sub)
    options[sub] = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text.split("Options:")[-1]))
    options[sub] |= {"--data-dir", "--help", "-h"}  # global options, accepted after the subcommand too
config_keys = set(re.findall(r"^  ([a-z_]+(?:\.[a-z_0-9]+)*)\s", help_text("train").split("config keys")[-1], re.M))
config_keys |= set(re.findall(r"^  ([a-z_]+\.[a-z_0-9.]+)\s", help_text("train"), re.M))
experiments = set(re.search(r"experiment: ([a-z0-9 |]+)", help_text("experiment")).group(1).replace(" ", "").split("|"))

command = re.compile(r"(?:^|[\s`(/$])distillery\s+([a-z][a-z0-9-]*)((?:[^`|;&\n])*)")


def code_spans(page):
    """(line number, code) for each fenced line (continuations joined) and each inline code span."""
    lines = open(os.path.join(root, page), encoding="utf-8").read().split("\n")
    in_fence, pending, start = False, "", 0
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending = ""
        else:
            for span in re.findall(r"`([^`]+)`", line):
                yield number, span


for page in markdown:
    for number, code in code_spans(page):
        for sub, rest in command.findall(code):
            where = f"{page}:{number}"
            if sub not in subcommands:
                fail(where, f"'distillery {sub}': no such subcommand")
                continue
            rest = re.sub(r"'[^']*'|\"[^\"]*\"", lambda m: m.group(0).replace(" ", "_"), rest)
            words = rest.split()
            if sub == "experiment":
                names = [w for w in words if not w.startswith("-")]
                if names and names[0] not in experiments and not names[0].isupper():
                    fail(where, f"'distillery experiment {names[0]}': no such experiment")
            for i, word in enumerate(words):
                if word.startswith("#"):
                    break  # a shell comment
                option = word.split("=")[0]
                if re.match(r"^--?[A-Za-z]", option) and option not in options[sub]:
                    fail(where, f"'distillery {sub} {option}': no such option")
                if option == "--set" and i + 1 < len(words):
                    key = words[i + 1].strip("'\"").split("=")[0]
                    if key and key not in config_keys and not key.isupper():
                        fail(where, f"'--set {key}': no such config key")

# 3. Generated pages.
check = subprocess.run([binary, "results", "--root", root, "--check"], capture_output=True, text=True)
if check.returncode != 0:
    for line in (check.stdout + check.stderr).splitlines():
        fail("generated pages", line)

# 4. Words about how the project was worked on. (The patterns are split so that this file
# does not match itself.)
work_period = re.compile(r"\b(" + "sess" + r"ions?\b|runs-" + r"s\d+|work[- ]" + r"periods?\b)", re.I)
for path in tracked("*.md", "*.cpp", "*.h", "*.yaml", "*.json", "*.py", "*.sh", "Makefile", "*.txt"):
    if path == "tests/docs_check.py":
        continue
    for number, line in enumerate(open(os.path.join(root, path), encoding="utf-8", errors="replace"), 1):
        found = work_period.search(line)
        if found:
            fail(f"{path}:{number}", f"refers to how the project was worked on: '{found.group(0)}'")

for line in failures:
    print("FAIL", line)
print(f"docs check: {len(markdown)} Markdown files, {len(failures)} problems")
sys.exit(1 if failures else 0)
