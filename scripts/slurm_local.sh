#!/usr/bin/env bash
# A throwaway single-node SLURM cluster on localhost, for testing reglab's SLURM launcher
# (tests/test_slurm.py; `make test` brings it up and down around pytest).
#
#   scripts/slurm_local.sh up      install (Debian, as root) and start munged, slurmctld, slurmd;
#                                  wait until the node is idle; print `export SLURM_CONF=…`
#   scripts/slurm_local.sh down    stop every daemon `up` started (no-op when none runs)
#   scripts/slurm_local.sh status  show the daemons and the node; exit 0 only when it is usable
#
# Everything lives under $SLURM_LOCAL_DIR (default /tmp/reglab-slurm): slurm.conf, the munge
# key and socket, state, spool, pid and log files. Clients find the cluster through
# SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf, and munge through that slurm.conf's AuthInfo, so
# nothing in /etc is used and a system SLURM or munge, if any, is left alone. No accounting:
# submitit warns that `sacct` is unavailable and follows its jobs without it.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/reglab-slurm}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)
PARTITION=local
MUNGE_SOCKET=$DIR/run/munge.socket # its directory must be searchable by all
MUNGE_KEY=$DIR/munge/munge.key
UP_TIMEOUT=${SLURM_LOCAL_TIMEOUT:-30} # seconds to wait for the node to become idle
export SLURM_CONF=$CONF

say() { echo "slurm_local: $*" >&2; }

# pid file of each daemon, in the order `down` stops them (slurmd first, munged last)
pidfile() { echo "$DIR/run/$1.pid"; }
DAEMONS=(slurmd slurmctld munged)

# The pid in the daemon's pid file, if that process is alive and is that daemon.
running_pid() {
    local file pid
    file=$(pidfile "$1")
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}

node_state() { timeout 5 sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n1; }

# ---------------------------------------------------------------------------------------------
# down

stop_daemon() {
    local pid
    pid=$(running_pid "$1") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do # up to 10 s to exit cleanly, then SIGKILL
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$(pidfile "$1")"
    say "stopped $1 (pid $pid)"
}

down() {
    # cancel leftover jobs first, so that no job step (slurmstepd) outlives slurmd
    if running_pid slurmctld >/dev/null && command -v scancel >/dev/null; then
        timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do # up to 10 s for them to end (squeue lists unfinished jobs)
            [[ -z $(timeout 5 squeue --noheader --format=%i 2>/dev/null || true) ]] && break
            sleep 0.2
        done
    fi
    for daemon in "${DAEMONS[@]}"; do stop_daemon "$daemon"; done
}

# ---------------------------------------------------------------------------------------------
# up

# On failure: one line saying why; stop the local cluster's daemons (no half-started cluster
# is left behind); exit 1.
die() {
    echo "slurm_local: cannot start a local SLURM: $*" >&2
    down >/dev/null 2>&1 || true
    exit 1
}

install_packages() {
    local missing=() tool log=$DIR/log/apt.log policy=/usr/sbin/policy-rc.d
    for tool in slurmctld slurmd sbatch munged; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "${missing[*]} not installed, and there is no apt-get"
    say "installing slurmctld slurmd slurm-client munge (log: $log)"
    # keep the packages' own services from starting: this script runs its own daemons
    local own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
    fi
    local pkgs=(slurmctld slurmd slurm-client munge) ok=0
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y --no-install-recommends "${pkgs[@]}" >"$log" 2>&1; then
        ok=1
    elif apt-get update >>"$log" 2>&1 &&
        apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1; then
        ok=1 # the package lists were stale or missing
    fi
    ((own_policy)) && rm -f "$policy"
    ((ok)) || die "apt-get install ${pkgs[*]} failed: $(tail -n1 "$log")"
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo) # MB, below the real
    # cred_expire: how long a requeued job waits before it may start again (SLURM's default,
    # 120 s, would make the time-limit test wait two minutes between the job's slots)
    cat >"$CONF.new" <<EOF
# written by scripts/slurm_local.sh: a single-node cluster on localhost, no accounting
ClusterName=reglab
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.new" "$CONF"
}

start_munged() {
    running_pid munged >/dev/null && return 0
    if [[ ! -s $MUNGE_KEY ]]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chmod 0400 "$MUNGE_KEY"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" --pid-file="$(pidfile munged)" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        >>"$DIR/log/munged.log" 2>&1 || die "munged failed (see $DIR/log/munged.log)"
    for _ in $(seq 25); do
        munge --socket="$MUNGE_SOCKET" --no-input 2>/dev/null |
            unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "munged does not answer on $MUNGE_SOCKET (see $DIR/log/munged.log)"
}

start_slurm_daemon() { # slurmctld | slurmd; both read $CONF and daemonize
    running_pid "$1" >/dev/null && return 0
    "$1" -f "$CONF" >>"$DIR/log/$1.log" 2>&1 || die "$1 failed to start (see $DIR/log/$1.log)"
    for _ in $(seq 25); do
        running_pid "$1" >/dev/null && return 0
        sleep 0.2
    done
    die "$1 exited at start ($(grep -iE 'error|fatal' "$DIR/log/$1.log" | tail -n1))"
}

up() {
    # slurmd must run as root to start jobs (SlurmUser=root), and only root can install
    [[ $(id -u) == 0 ]] || die "it needs root (running as $(id -un))"
    set -o errtrace # any other failure, in any function: one line naming the command
    trap 'die "line $LINENO: \`$BASH_COMMAND\` failed"' ERR
    mkdir -p "$DIR"/{log,munge,run,spool,state}
    chmod 0700 "$DIR/munge" # the key's; munged refuses one that others can read
    chmod 0755 "$DIR" "$DIR/run" # the socket's: others may search it, not write to it
    install_packages
    # Already running (an earlier `up`): keep it. Partly running: start it again from scratch.
    local alive=0 daemon
    for daemon in "${DAEMONS[@]}"; do running_pid "$daemon" >/dev/null && alive=$((alive + 1)); done
    if ((alive > 0 && alive < ${#DAEMONS[@]})); then
        say "some daemons are down: restarting all"
        down
    fi
    ((alive == ${#DAEMONS[@]})) || write_conf
    start_munged # first: slurmctld and slurmd authenticate every message through it
    start_slurm_daemon slurmctld
    start_slurm_daemon slurmd
    local state=""
    for _ in $(seq $((UP_TIMEOUT * 5))); do
        state=$(node_state || true)
        case $state in
        idle | mixed | allocated | completing) break ;;
        down* | drain*) timeout 5 scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    case $state in
    idle | mixed | allocated | completing) ;;
    *) die "node $NODE is '${state:-unreachable}' after ${UP_TIMEOUT}s (see $DIR/log/)" ;;
    esac
    trap - ERR
    say "up: node $NODE is $state in partition $PARTITION (clients need SLURM_CONF=$CONF)"
    echo "export SLURM_CONF=$CONF" # for callers: eval "$(scripts/slurm_local.sh up)"
}

status() {
    local daemon pid ok=0
    for daemon in "${DAEMONS[@]}"; do
        if pid=$(running_pid "$daemon"); then echo "$daemon: running (pid $pid)"; else
            echo "$daemon: not running"
            ok=3
        fi
    done
    echo "SLURM_CONF=$CONF"
    if ((ok == 0)) && command -v sinfo >/dev/null; then
        timeout 5 sinfo || ok=3
        case $(node_state || true) in idle | mixed | allocated | completing) ;; *) ok=3 ;; esac
    fi
    return $ok
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
