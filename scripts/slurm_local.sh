#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying the SLURM launcher (conf/hydra/launcher/slurm.yaml)
# and for the slow SLURM tests: Debian's slurm-wlm + munge (+ slurmdbd on MariaDB, so that `sacct`
# works), one node with 2 CPUs, one partition `debug`. Needs root (apt-get) on Debian/Ubuntu.
#
#   bash scripts/slurm_local.sh          # install (once) and start munged, mariadb, slurmdbd, slurmctld, slurmd
#   bash scripts/slurm_local.sh stop     # stop the daemons
#
# Idempotent: re-running it restarts the daemons with the same configuration.
set -euo pipefail

CPUS="${SLURM_LOCAL_CPUS:-2}"
NODE="$(hostname -s)"
CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurmctld

stop_all() {
    for d in slurmd slurmctld slurmdbd; do
        if pgrep -x "$d" >/dev/null; then
            kill "$(pgrep -x "$d")" || true
        fi
    done
}

if [[ "${1:-}" == "stop" ]]; then
    stop_all
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server >/dev/null
fi

# munge: one key for the node
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --force 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --force
fi

# accounting database (sacct): MariaDB + slurmdbd
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! pgrep -x mariadbd >/dev/null; then
    (mysqld_safe --user=mysql >/var/log/mysqld_safe.log 2>&1 &)
    for _ in $(seq 1 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
          CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

mkdir -p "$CONF_DIR" "$STATE_DIR" /var/spool/slurmd /var/log/slurm /run/slurm
chown slurm:slurm "$STATE_DIR" /var/log/slurm /run/slurm

cat >"$CONF_DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm "$CONF_DIR/slurmdbd.conf" && chmod 600 "$CONF_DIR/slurmdbd.conf"

cat >"$CONF_DIR/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MpiDefault=none
NodeName=$NODE CPUs=$CPUS RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

stop_all
sleep 1
slurmdbd
for _ in $(seq 1 30); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -i add cluster local >/dev/null 2>&1 || true
slurmctld
slurmd
for _ in $(seq 1 30); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qE "idle|mix|alloc"; then
        sinfo
        exit 0
    fi
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm_local.sh: the node did not come up; see /var/log/slurm/slurmd.log and slurmctld.log" >&2
exit 1
