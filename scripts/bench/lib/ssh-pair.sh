# Sourced by benchmarks: a primary and a secondary as two hosts, the way a deployment has them.
# The secondary "host" is a network namespace ($NS, address $ADDR) with its own OpenSSH server
# behind a veth pair; its georep user ($SUSER) is unprivileged and applies changes through
# the mount the mountbroker sets up for it. Two georepd (pvol on the primary, svol on the
# secondary), the session pvol -> $SUSER@$SHOST::svol created with push-pem (not started),
# the primary volume mounted at $BASE/fs/pm with MOUNT_OPTS, all on a fresh ext4 image of
# IMG_MB MiB.
#
# Set BASE, TAG (names), NET (the third byte of 10.233.NET.0/24) first; then `pair_up`.
# DELAY_MS > 0: the session reaches sshd through scripts/bench/delay-proxy on the host side
# (that much each way); RATE (e.g. 100mbit): a tbf qdisc on both ends of the link.
# Gives `node p|s`, `geo WORDS...` (the session's commands), `wire` (bytes on the link) and
# $OPKEY (an SSH key the secondary user accepts, for rsync and lsyncd). Torn down on exit.

NS=georep-$TAG
VETH=gr$TAG
ADDR=10.233.$NET.2
SUSER=georep$TAG
OPKEY=$BASE/h/opkey

node() { echo "GEOREP_STATE_DIR=$BASE/$1/state GEOREP_CONFIG_DIR=$BASE/$1/etc GEOREP_LOG_DIR=$BASE/$1/log GEOREP_RUN_DIR=$BASE/$1/run"; }
geo() { env $(node p) georep volume geo-replication pvol "$SUSER@$SHOST::svol" "$@"; }
wire() { echo $(( $(cat /sys/class/net/$VETH/statistics/rx_bytes) + $(cat /sys/class/net/$VETH/statistics/tx_bytes) )); }

pair_down() {
  mountpoint -q "$BASE/fs/pm" 2>/dev/null && umount "$BASE/fs/pm"
  pkill -f "georepd --node-name $TAG-" || true
  pkill -f "delay-proxy 10.233.$NET.1" || true
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  pkill -KILL -u "$SUSER" 2>/dev/null || true
  sleep 0.5
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$VETH" 2>/dev/null || true
  for m in $(awk -v d="$BASE" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m" || true; done
  userdel -f "$SUSER" 2>/dev/null || true
  groupdel "${SUSER}g" 2>/dev/null || true
  rm -rf "$BASE"
}

pair_up() {
  trap pair_down EXIT
  DELAY_MS=${DELAY_MS:-0} RATE=${RATE:-}
  if [ "$DELAY_MS" != 0 ]; then SHOST=10.233.$NET.1 SPORT=2222; else SHOST=$ADDR SPORT=22; fi
  pair_down
  mkdir -p "$BASE/fs" "$BASE/h" "$BASE/s" "$BASE/p" /run/sshd
  chmod 0711 "$BASE"
  truncate -s "${IMG_MB:-4096}M" "$BASE/ext4.img"; mkfs.ext4 -q -F "$BASE/ext4.img"; mount -o loop "$BASE/ext4.img" "$BASE/fs"
  ip netns add "$NS"
  ip link add "$VETH" type veth peer name "${VETH}p"
  ip link set "${VETH}p" netns "$NS"
  ip addr add "10.233.$NET.1/24" dev "$VETH"; ip link set "$VETH" up
  ip -n "$NS" addr add "$ADDR/24" dev "${VETH}p"; ip -n "$NS" link set "${VETH}p" up; ip -n "$NS" link set lo up
  if [ -n "$RATE" ]; then
    tc qdisc add dev "$VETH" root tbf rate "$RATE" burst 256kb latency 50ms
    ip netns exec "$NS" tc qdisc add dev "${VETH}p" root tbf rate "$RATE" burst 256kb latency 50ms
  fi
  ssh-keygen -q -t ed25519 -N "" -f "$BASE/h/hostkey"
  ssh-keygen -q -t ed25519 -N "" -f "$OPKEY"
  # The secondary's unprivileged user, in the mountbroker's group.
  groupadd "${SUSER}g"
  useradd -M -U -G "${SUSER}g" -s /bin/sh -p '*' -d "$BASE/h/home" "$SUSER"
  mkdir -p "$BASE/h/home/.ssh" "$BASE/fs/rdst"
  cp "$OPKEY.pub" "$BASE/h/home/.ssh/authorized_keys"
  chown -R "$SUSER:$SUSER" "$BASE/h/home" "$BASE/fs/rdst"; chmod 700 "$BASE/h/home" "$BASE/h/home/.ssh"
  cat > "$BASE/h/sshd_config" <<EOF
ListenAddress $ADDR
HostKey $BASE/h/hostkey
PidFile $BASE/h/sshd.pid
UsePAM no
PasswordAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes no
MaxStartups 100
EOF
  ip netns exec "$NS" /usr/sbin/sshd -f "$BASE/h/sshd_config"
  env $(node s) georepd --node-name "$TAG-s" --listen none > "$BASE/s/georepd.log" 2>&1 &
  env $(node p) HOME="$BASE/h" georepd --node-name "$TAG-p" --listen none --operator-key "$OPKEY" \
    --remote-receiver "env GEOREP_RUN_DIR=$BASE/s/run $(command -v georep) receiver" > "$BASE/p/georepd.log" 2>&1 &
  for _ in $(seq 100); do
    env $(node s) georep pool list >/dev/null 2>&1 && env $(node p) georep pool list >/dev/null 2>&1 && break
    sleep 0.1
  done
  chmod 0711 "$BASE/s" "$BASE/s/run"
  env $(node p) georep volume create pvol "$TAG-p:$BASE/fs/pb" >/dev/null
  env $(node p) georep volume start pvol >/dev/null
  env $(node s) georep volume create svol "$TAG-s:$BASE/fs/sb" >/dev/null
  env $(node s) georep volume start svol >/dev/null
  env $(node s) gluster-mountbroker setup "$BASE/mbroot" "${SUSER}g" >/dev/null
  env $(node s) gluster-mountbroker add svol "$SUSER" >/dev/null
  mkdir -p "$BASE/fs/pm"
  env $(node p) mount -t georep pvol "$BASE/fs/pm" ${MOUNT_OPTS:+-o "$MOUNT_OPTS"}
  env $(node p) georep system execute gsec_create >/dev/null
  if [ "$DELAY_MS" != 0 ]; then
    scripts/bench/delay-proxy "$SHOST:$SPORT" "$ADDR:22" "$DELAY_MS" &
    for _ in $(seq 50); do (exec 3<>/dev/tcp/$SHOST/$SPORT) 2>/dev/null && break; sleep 0.1; done
  fi
  geo create ssh-port "$SPORT" push-pem >/dev/null
}

# Starts the session and waits for its Changelog Crawl (the Hybrid crawl of what is there done).
pair_start() {
  geo start >/dev/null
  for _ in $(seq 600); do
    geo status | grep -q 'Changelog Crawl' && return 0
    sleep 0.1
  done
  echo "the session did not reach its Changelog Crawl:" >&2; geo status detail >&2; return 1
}
