#!/usr/bin/env bash
# Install or upgrade Media Pipeline as a systemd service. Idempotent: run it again after
# updating the source to upgrade; an existing config.yaml is never overwritten.
# See docs/OPERATIONS.md. Run as root.
set -euo pipefail
umask 022

readonly NAME=media-pipeline
readonly OPT_DIR=/opt/media-pipeline
readonly VENV_DIR=$OPT_DIR/.venv
readonly CONFIG_DIR=/etc/media-pipeline
readonly STATE_DIR=/var/lib/media-pipeline
readonly LOG_DIR=/var/log/media-pipeline
readonly DATA_DIR=/srv/media
readonly UNIT_DIR=/etc/systemd/system
readonly UNIT_NAME=$NAME.service
readonly BIN_LINK=/usr/local/bin/$NAME

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd -- "$SCRIPT_DIR/.." && pwd)
ROOT=${DESTDIR:-/}
PYTHON=python3
DO_USER=1
DO_VENV=1
DO_PIP=1
DO_SYSTEMCTL=1

usage() {
    cat <<EOF
Usage: $(basename -- "$0") [OPTIONS]

Installs (or upgrades) Media Pipeline as the systemd service $UNIT_NAME:
  system user and group    $NAME (only when installing into /)
  program                  $VENV_DIR (python3 -m venv, pip install of the source)
  command                  $BIN_LINK -> $VENV_DIR/bin/$NAME
  configuration            $CONFIG_DIR/config.yaml (from config/config.example.yaml,
                           never overwritten once it exists)
  state, logs              $STATE_DIR, $LOG_DIR
  data folders             $DATA_DIR/{inbox,duplicates,batches,sync,sorted}
  unit                     $UNIT_DIR/$UNIT_NAME (then systemctl daemon-reload, enable)

Options:
  --root DIR, --prefix DIR  install into DIR instead of / (DESTDIR-style staging; also
                            taken from \$DESTDIR). Implies no user creation, no chown and
                            no systemctl. A venv made there is for staging or tests only.
  --source DIR              project source to install (default: $SOURCE)
  --python PATH             interpreter for the venv, Python >= 3.11 (default: python3)
  --no-user                 do not create the system user and group
  --no-venv                 do not create the venv nor install the program
  --skip-pip                create the venv but do not pip install the program
  --no-systemctl            do not run systemctl (daemon-reload, enable)
  -h, --help                show this help
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

need_value() {
    [[ $# -ge 2 && -n $2 ]] || {
        printf 'error: %s needs a value\n' "$1" >&2
        usage >&2
        exit 2
    }
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case $1 in
        --root | --prefix | --destdir)
            need_value "$@"
            ROOT=$2
            shift 2
            ;;
        --root=* | --prefix=* | --destdir=*)
            ROOT=${1#*=}
            shift
            ;;
        --source)
            need_value "$@"
            SOURCE=$2
            shift 2
            ;;
        --source=*)
            SOURCE=${1#*=}
            shift
            ;;
        --python)
            need_value "$@"
            PYTHON=$2
            shift 2
            ;;
        --python=*)
            PYTHON=${1#*=}
            shift
            ;;
        --no-user) DO_USER=0 && shift ;;
        --no-venv) DO_VENV=0 && shift ;;
        --skip-pip) DO_PIP=0 && shift ;;
        --no-systemctl) DO_SYSTEMCTL=0 && shift ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf 'error: unknown option: %s\n' "$1" >&2
            usage >&2
            exit 2
            ;;
        esac
    done
}

# Path of an installed file inside the target root.
target() { printf '%s%s' "${ROOT%/}" "$1"; }

is_live() { [[ $ROOT == / ]]; }

# Ownership for what we create: the service user when it exists on the live system.
CHOWN_TO=""

check_preconditions() {
    [[ -n $ROOT ]] || die "--root must not be empty"
    ROOT=$(realpath -m -- "$ROOT")
    [[ -d $SOURCE ]] || die "source folder not found: $SOURCE"
    SOURCE=$(cd -- "$SOURCE" && pwd)
    [[ -f $SOURCE/systemd/$UNIT_NAME ]] ||
        die "unit file not found: $SOURCE/systemd/$UNIT_NAME (is --source the project folder?)"
    [[ -f $SOURCE/config/config.example.yaml ]] ||
        die "example config not found: $SOURCE/config/config.example.yaml" \
            "(it is copied to $CONFIG_DIR/config.yaml on the first install)"
    if [[ $DO_VENV == 1 && $DO_PIP == 1 ]]; then
        [[ -f $SOURCE/pyproject.toml ]] ||
            die "pyproject.toml not found in $SOURCE (use --skip-pip or --no-venv to skip the program)"
    fi
    if is_live; then
        [[ $EUID -eq 0 ]] || die "run as root (e.g. sudo $0), or use --root DIR to stage elsewhere"
    else
        mkdir -p -- "$ROOT"
    fi
}

create_user() {
    if ! is_live; then
        say "Skipping user creation: installing into $ROOT, not /"
        note "create it on the target system: groupadd --system $NAME &&" \
            "useradd --system --gid $NAME --home-dir $STATE_DIR --shell /usr/sbin/nologin $NAME"
        return
    fi
    if [[ $DO_USER == 0 ]]; then
        say "Skipping user creation (--no-user)"
    else
        say "System user and group $NAME"
        if getent group "$NAME" >/dev/null; then
            note "group $NAME exists"
        else
            groupadd --system "$NAME"
            note "created group $NAME"
        fi
        if getent passwd "$NAME" >/dev/null; then
            note "user $NAME exists"
        else
            useradd --system --gid "$NAME" --home-dir "$STATE_DIR" --no-create-home \
                --shell /usr/sbin/nologin --comment "Media Pipeline daemon" "$NAME"
            note "created user $NAME"
        fi
    fi
    if getent passwd "$NAME" >/dev/null; then
        CHOWN_TO=$NAME:$NAME
    else
        warn "user $NAME does not exist: folders stay owned by root and the service" \
            "cannot start until it does"
    fi
}

# ensure_dir MODE OWNED PATH: create PATH with MODE (owned by the service user when
# OWNED=1); an existing folder is left exactly as it is, so local changes survive.
ensure_dir() {
    local mode=$1 owned=$2 path=$3 dest
    dest=$(target "$path")
    if [[ -d $dest ]]; then
        note "kept    $path"
        return
    fi
    [[ -e $dest || -L $dest ]] && die "$dest exists and is not a folder"
    mkdir -p -- "$dest"
    chmod "$mode" -- "$dest"
    if [[ $owned == 1 && -n $CHOWN_TO ]]; then
        chown "$CHOWN_TO" -- "$dest"
    fi
    note "created $path ($mode)"
}

create_dirs() {
    say "Folders"
    # /etc/media-pipeline is writable by the daemon: PUT /api/config rewrites
    # config.yaml atomically through a temporary file in the same folder.
    ensure_dir 0750 1 "$CONFIG_DIR"
    ensure_dir 0750 1 "$STATE_DIR"
    ensure_dir 0750 1 "$STATE_DIR/tmp"
    ensure_dir 0750 1 "$LOG_DIR"
    ensure_dir 0750 1 "$DATA_DIR"
    # setgid: files dropped by other group members (inbox) or written by Syncthing
    # (sync) stay in group $NAME.
    ensure_dir 2770 1 "$DATA_DIR/inbox"
    ensure_dir 0750 1 "$DATA_DIR/duplicates"
    ensure_dir 0750 1 "$DATA_DIR/batches"
    ensure_dir 2770 1 "$DATA_DIR/sync"
    ensure_dir 0750 1 "$DATA_DIR/sorted"
    ensure_dir 0755 0 "$OPT_DIR"
}

# install_file MODE SRC PATH [backup]: copy when missing or different; with "backup",
# a replaced file is kept as PATH.bak (local edits to a unit are not lost silently).
install_file() {
    local mode=$1 src=$2 path=$3 backup=${4:-} dest
    dest=$(target "$path")
    if [[ -f $dest ]] && cmp -s -- "$src" "$dest"; then
        chmod "$mode" -- "$dest"
        note "unchanged $path"
        return
    fi
    mkdir -p -- "$(dirname -- "$dest")"
    local verb=installed
    if [[ -e $dest ]]; then
        verb=updated
        if [[ $backup == backup ]]; then
            cp -p -- "$dest" "$dest.bak"
            verb="updated (previous kept as $path.bak)"
        fi
    fi
    install -m "$mode" -- "$src" "$dest"
    note "$verb $path"
}

install_config() {
    say "Configuration"
    local config example
    config=$(target "$CONFIG_DIR/config.yaml")
    example=$SOURCE/config/config.example.yaml
    # The current example sits beside the live config so an upgrade's new keys can
    # be compared with: diff config.example.yaml config.yaml
    install_file 0644 "$example" "$CONFIG_DIR/config.example.yaml"
    if [[ -e $config ]]; then
        note "kept    $CONFIG_DIR/config.yaml (existing file is never overwritten)"
        return
    fi
    install -m 0640 -- "$example" "$config"
    if [[ -n $CHOWN_TO ]]; then
        chown "$CHOWN_TO" -- "$config"
    fi
    note "created $CONFIG_DIR/config.yaml from config/config.example.yaml: edit it"
}

install_docs() {
    local doc docs=()
    for doc in "$SOURCE"/docs/*; do
        [[ -f $doc ]] && docs+=("$doc")
    done
    [[ ${#docs[@]} -gt 0 ]] || return 0
    say "Documentation"
    for doc in "${docs[@]}"; do
        install_file 0644 "$doc" "$OPT_DIR/docs/$(basename -- "$doc")"
    done
}

install_program() {
    if [[ $DO_VENV == 0 ]]; then
        say "Skipping the program (--no-venv)"
        return
    fi
    say "Program in $VENV_DIR"
    local venv
    venv=$(target "$VENV_DIR")
    command -v "$PYTHON" >/dev/null || die "python not found: $PYTHON (use --python PATH)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())');" \
            "3.11 or newer is needed (use --python PATH)"
    if [[ -x $venv/bin/python ]]; then
        note "kept    $VENV_DIR"
    else
        "$PYTHON" -m venv -- "$venv" ||
            die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
        note "created $VENV_DIR"
    fi
    if [[ $DO_PIP == 0 ]]; then
        note "skipping pip install (--skip-pip)"
    else
        note "pip install $SOURCE"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade -- "$SOURCE" ||
            die "pip install failed (see above)"
        note "installed $("$venv/bin/$NAME" --version 2>/dev/null || echo "$NAME")"
    fi
    link_command
}

link_command() {
    local link
    link=$(target "$BIN_LINK")
    if [[ -e $link && ! -L $link ]]; then
        warn "$BIN_LINK exists and is not a symlink: left alone"
        return
    fi
    mkdir -p -- "$(dirname -- "$link")"
    ln -sfn -- "$VENV_DIR/bin/$NAME" "$link"
    note "linked  $BIN_LINK -> $VENV_DIR/bin/$NAME"
}

install_unit() {
    say "systemd unit"
    install_file 0644 "$SOURCE/systemd/$UNIT_NAME" "$UNIT_DIR/$UNIT_NAME" backup
    note "local changes belong in a drop-in: systemctl edit $NAME"
}

run_systemctl() {
    if ! is_live; then
        say "Skipping systemctl: installing into $ROOT, not /"
        return
    fi
    if [[ $DO_SYSTEMCTL == 0 ]]; then
        say "Skipping systemctl (--no-systemctl)"
        return
    fi
    if [[ ! -d /run/systemd/system ]]; then
        say "Skipping systemctl: systemd is not running on this machine"
        return
    fi
    say "systemctl daemon-reload and enable"
    systemctl daemon-reload
    systemctl enable "$UNIT_NAME" 2>&1 | sed 's/^/    /'
    if systemctl is-active --quiet "$UNIT_NAME"; then
        warn "$UNIT_NAME is running the previous version: systemctl restart $NAME"
    fi
}

next_steps() {
    say "Done"
    if is_live; then
        note "1. edit $CONFIG_DIR/config.yaml (paths, syncthing, auth)"
        note "2. sudo -u $NAME $NAME check-config"
        note "3. systemctl start $NAME && journalctl -u $NAME -f"
    else
        note "staged into $ROOT"
    fi
}

main() {
    parse_args "$@"
    check_preconditions
    say "Installing $NAME from $SOURCE into $ROOT"
    create_user
    create_dirs
    install_config
    install_program
    install_docs
    install_unit
    run_systemctl
    next_steps
}

main "$@"
