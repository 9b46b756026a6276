# The functions a scenario script calls inside the guest (busybox sh).
# The guest's /init sets QEMU, QEMU_DATA, RESULTS and MDEV0, MDEV1...;
# the script qseries writes sets DEVICE_OPTIONS and calls these.
trap "" PIPE
RUN=${RUN:-/run}
WAIT_TENTHS=300
QUIET_TENTHS=5
QUIT_SECONDS=10
# STAMP=1 (the bench): each line a QEMU says reaches its .out file
# through a FIFO and a reader that writes it after the guest's clock as
# it read it, "@SECONDS.MICROSECONDS LINE" (busybox ash's EPOCHREALTIME:
# microseconds, and no process forked per line); and each scenario's
# start and end go to the results as "QSERIES-CLOCK NAME start|end TIME".
STAMP=${STAMP:-0}
exec 9> "$RESULTS"

say_error() {
    echo "QSERIES-SCENARIO-ERROR: $scenario: $*" >&9
}

# vm_start NAME FD MDEV [ARG...]: a QEMU with one vfio-pci device on the
# mdev, its QMP on stdin/stdout, fed through fd FD from a FIFO; returns
# once QEMU answered on QMP.
vm_start() {
    name=$1
    fd=$2
    dev=$3
    shift 3
    rm -f "$RUN/$name.in" "$RUN/$name.out" "$RUN/$name.err" "$RUN/$name.qmp"
    # There before QEMU's shell opens it (after the FIFO): what waits
    # for QEMU's answer reads it from the start.
    : > "$RUN/$name.out"
    mkfifo "$RUN/$name.in"
    out="$RUN/$name.out"
    if [ "$STAMP" = 1 ]; then
        mkfifo "$RUN/$name.qmp"
        stamp_lines >> "$out" < "$RUN/$name.qmp" 3>&- 4>&- 9>&- &
        eval "stamper_$name=\$!"
        out="$RUN/$name.qmp"
    fi
    # Without the script's own descriptors: the results port, the other
    # QEMU's QMP stream.
    "$QEMU" -machine q35 -accel qtest -nodefaults -display none -m 64M \
        -L "$QEMU_DATA" \
        -device "vfio-pci,id=vfio0,sysfsdev=$dev,$DEVICE_OPTIONS" \
        -qmp stdio "$@" \
        < "$RUN/$name.in" > "$out" 2> "$RUN/$name.err" 3>&- 4>&- 9>&- &
    eval "pid_$name=\$! fd_$name=$fd"
    started="$started $name"
    eval "exec $fd> \"\$RUN/$name.in\""
    send "$fd" '{"execute": "qmp_capabilities"}'
    # Its first return: QEMU is up, its -incoming listening.
    wait_event "$name" 1 "answer to qmp_capabilities" '"return"'
}

# stamp_lines: stdin to stdout, each line after the time it was read.
stamp_lines() {
    while IFS= read -r line || [ -n "$line" ]; do
        printf '@%s %s\n' "$EPOCHREALTIME" "$line"
    done
}

# mark start|end: the guest's clock at a scenario's start or end.
mark() {
    if [ "$STAMP" = 1 ]; then
        echo "QSERIES-CLOCK $scenario $1 $EPOCHREALTIME" >&9
    fi
}

# send FD JSON: one QMP command.
send() {
    eval "printf '%s\n' \"\$2\" >&$1"
}

# count PATTERN...: the lines of stdin that hold every pattern.
count() {
    if [ $# -eq 0 ]; then
        wc -l
        return
    fi
    first=$1
    shift
    grep -F -- "$first" | count "$@"
}

# wait_event NAME N WHAT PATTERN...: until NAME said its Nth line that
# holds every pattern; an error line after WAIT_TENTHS tenths.
wait_event() {
    name=$1
    n=$2
    what=$3
    shift 3
    eval "pid=\$pid_$name"
    tenths=0
    while [ "$(count "$@" < "$RUN/$name.out")" -lt "$n" ]; do
        if ! kill -0 "$pid" 2> /dev/null; then
            say_error "$name: QEMU exited before its $what"
            return 1
        fi
        tenths=$((tenths + 1))
        if [ "$tenths" -ge "$WAIT_TENTHS" ]; then
            say_error "$name: no $what after $((WAIT_TENTHS / 10)) s"
            return 1
        fi
        sleep 0.1
    done
}

# settle NAME...: until none of them has written for QUIET_TENTHS tenths.
settle() {
    last=""
    quiet=0
    while [ "$quiet" -lt "$QUIET_TENTHS" ]; do
        now=""
        for name in "$@"; do
            now="$now $(wc -c < "$RUN/$name.out")"
        done
        if [ "$now" = "$last" ]; then
            quiet=$((quiet + 1))
        else
            quiet=0
            last=$now
        fi
        sleep 0.1
    done
}

# vm_quit NAME FD: quit, and wait until QEMU has exited (killed after
# QUIT_SECONDS by a watchdog: an exited QEMU stays a zombie, alive to
# kill -0, until it is waited for).
vm_quit() {
    name=$1
    fd=$2
    eval "pid=\$pid_$name"
    send "$fd" '{"execute": "quit", "id": "quit"}'
    (sleep "$QUIT_SECONDS"; kill -9 "$pid" 2> /dev/null &&
        say_error "$name: killed, still running $QUIT_SECONDS s after quit") &
    watchdog=$!
    wait "$pid"
    kill "$watchdog" 2> /dev/null
    wait "$watchdog" 2> /dev/null
    if [ "$STAMP" = 1 ]; then
        eval "wait \$stamper_$name"  # until it wrote its last line
    fi
    eval "exec $fd>&-"
}

# emit NAME: what NAME said on QMP and on stderr, framed (each marker on
# a line of its own, also after a last line without its newline).
emit() {
    echo "QSERIES-BEGIN $scenario $1" >&9
    cat "$RUN/$1.out" >&9
    printf '\nQSERIES-STDERR %s %s\n' "$scenario" "$1" >&9
    cat "$RUN/$1.err" >&9
    printf '\nQSERIES-END %s %s\n' "$scenario" "$1" >&9
}

# scenario_begin NAME: a scenario starts, with nothing of the one before.
scenario_begin() {
    scenario=$1
    started=""
    rm -f "$RUN"/*.in "$RUN"/*.out "$RUN"/*.err "$RUN"/*.qmp
    mark start
}

# scenario_end NAME...: after the scenario's steps (or the first that
# failed), until its QEMUs are quiet; then each of them that started
# quits, in this order, and what it said is written.
scenario_end() {
    ran=""
    for name in "$@"; do
        case " $started " in
            *" $name "*) ran="$ran $name" ;;
        esac
    done
    if [ -n "$ran" ]; then
        settle $ran
    fi
    for name in $ran; do
        eval "vm_quit $name \$fd_$name"
    done
    for name in $ran; do
        emit "$name"
    done
    mark end
}

# migrate FD: the source migrates to MIGRATE_URI.
migrate() {
    send "$1" "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"$MIGRATE_URI\"}}"
}
