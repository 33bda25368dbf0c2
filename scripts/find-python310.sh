#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter (Rasa 3.6 needs 3.8-3.10; 3.11 is refused).
# Looks at $PYTHON310, then python3.10 on PATH, then pyenv's versions folder, then /usr/bin.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,10) else 1)' 2>/dev/null; }
for c in "${PYTHON310:-}" "$(command -v python3.10 2>/dev/null)"; do
  if [ -n "$c" ] && ok "$c"; then echo "$c"; exit 0; fi
done
root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
for c in $(ls -d "$root"/versions/3.10.*/bin/python 2>/dev/null | sort -V -r) /usr/bin/python3.10 /usr/local/bin/python3.10; do
  if [ -x "$c" ] && ok "$c"; then echo "$c"; exit 0; fi
done
cat >&2 <<'MSG'
Signpost needs Python 3.10 (Rasa 3.6 does not install on 3.11 or newer) and none was found.
Install it, then run the command again, for example:
  pyenv install 3.10.13          (with pyenv)
  apt-get install python3.10 python3.10-venv   (Debian/Ubuntu, if packaged)
or point to one: PYTHON310=/path/to/python3.10 make run
MSG
exit 1
