# The options every recipe takes, parsed once: sourced by each recipes/<name>/run.sh (from the repository
# root) before its own arguments. Sets SMOKE (0/1) and OUT (empty: the recipe's default) and shifts them
# off the caller's arguments, leaving the dotted overrides.
SMOKE=0
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) break ;;
  esac
done
