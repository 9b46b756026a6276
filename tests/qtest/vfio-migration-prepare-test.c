/*
 * QTest for the VFIO_MIGRATION_PREPARE event
 *
 * A vfio-pci device with migration-events=on sends VFIO_MIGRATION_PREPARE
 * before each migration state transition starts and VFIO_MIGRATION once it
 * is done.  This test records every QMP event in arrival order and checks
 * that each completion is directly preceded by the prepare event for the
 * same state, that the sequences of stop/cont and of live migrations are
 * the expected ones, and, against the log of the device, that each prepare
 * event was timestamped before its transition began.
 *
 * No CI machine has a VFIO device that can migrate, so the device is a
 * user-space fake of the Linux VFIO interface, loaded into QEMU with
 * LD_PRELOAD from the path in QTEST_VFIO_FAKE.  The test is skipped when
 * that variable is not set.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"

#define DEVICE_ID "vfio0"
#define WAIT_US (60 * G_USEC_PER_SEC)
#define QUIET_US (5 * G_USEC_PER_SEC)
#define POLL_US (10 * 1000)

typedef struct VfioEvent {
    bool prepare;
    char *state;            /* QAPI name, e.g. "stop-copy" */
    int64_t time_us;        /* QEMU's event timestamp */
} VfioEvent;

typedef struct Transition {
    char *to;               /* kernel name, e.g. "STOP_COPY" */
    int64_t begin_us;
    int64_t end_us;
    char *result;
} Transition;

typedef struct TestVM {
    const char *name;       /* "source", "destination" or "vm" */
    QTestState *qts;
    GArray *events;         /* of VfioEvent, in arrival order */
    char *dir;              /* the fake sysfs device and the device log */
    char *log;
    guint early;            /* transitions made before QMP was up */
} TestVM;

static const char *fake_lib;

static GPtrArray *vm_transitions(TestVM *vm);
static void transitions_free(GPtrArray *list);

static bool record_event(QTestState *qts, const char *name, QDict *event,
                         void *opaque)
{
    TestVM *vm = opaque;
    QDict *data, *stamp;
    VfioEvent ev;

    if (strcmp(name, "VFIO_MIGRATION") &&
        strcmp(name, "VFIO_MIGRATION_PREPARE")) {
        return true;
    }
    data = qdict_get_qdict(event, "data");
    stamp = qdict_get_qdict(event, "timestamp");
    g_assert(data && stamp);
    g_assert_cmpstr(qdict_get_str(data, "device-id"), ==, DEVICE_ID);
    g_assert(qdict_haskey(data, "qom-path"));

    ev.prepare = !strcmp(name, "VFIO_MIGRATION_PREPARE");
    ev.state = g_strdup(qdict_get_str(data, "device-state"));
    ev.time_us = qdict_get_int(stamp, "seconds") * G_USEC_PER_SEC +
                 qdict_get_int(stamp, "microseconds");
    g_array_append_val(vm->events, ev);
    return true;
}

/*
 * @path as the value of a -device property on the command line, which
 * libqtest hands to a shell: commas doubled, then quoted for the shell.
 */
static char *option_path(const char *path)
{
    g_auto(GStrv) parts = g_strsplit(path, ",", -1);
    g_autofree char *value = g_strjoinv(",,", parts);

    return g_shell_quote(value);
}

/*
 * Start QEMU with one fake vfio-pci device.  @env is a NULL-terminated
 * list of NAME, VALUE pairs for the fake.
 */
static TestVM *vm_start(const char *name, const char *const *env,
                        const char *extra_args)
{
    TestVM *vm = g_new0(TestVM, 1);
    g_autofree char *link = NULL;
    g_autofree char *sysfsdev = NULL;
    GPtrArray *transitions;
    int i;

    vm->name = name;
    vm->events = g_array_new(false, true, sizeof(VfioEvent));
    vm->dir = g_dir_make_tmp("vfio-prepare-XXXXXX", NULL);
    g_assert(vm->dir);
    /* Only the group number matters: the link may dangle. */
    link = g_build_filename(vm->dir, "iommu_group", NULL);
    g_assert_cmpint(symlink("../../../kernel/iommu_groups/4242", link), ==, 0);
    vm->log = g_build_filename(vm->dir, "fakevfio.log", NULL);
    sysfsdev = option_path(vm->dir);
    /* Kept when the test fails: vm_quit() is not reached then. */
    g_test_message("%s device log: %s", name, vm->log);

    g_setenv("LD_PRELOAD", fake_lib, true);
    g_setenv("FAKEVFIO_LOG", vm->log, true);
    for (i = 0; env && env[i]; i += 2) {
        g_setenv(env[i], env[i + 1], true);
    }
    vm->qts = qtest_initf("-machine q35 -nodefaults -m 64M "
                          "-device vfio-pci,id=" DEVICE_ID ",sysfsdev=%s,"
                          "enable-migration=on,migration-events=on %s",
                          sysfsdev, extra_args ? extra_args : "");
    g_unsetenv("LD_PRELOAD");
    g_unsetenv("FAKEVFIO_LOG");
    for (i = 0; env && env[i]; i += 2) {
        g_unsetenv(env[i]);
    }
    qtest_qmp_set_event_callback(vm->qts, record_event, vm);

    /*
     * QEMU starts the VM (with P2P, RUNNING -> RUNNING_P2P -> RUNNING)
     * before it serves QMP, so nobody can hear the events of those
     * transitions.  Every later one must be announced.
     */
    transitions = vm_transitions(vm);
    vm->early = transitions->len;
    transitions_free(transitions);
    return vm;
}

static void vm_quit(TestVM *vm)
{
    g_autofree char *link = g_build_filename(vm->dir, "iommu_group", NULL);
    guint i;

    qtest_quit(vm->qts);
    for (i = 0; i < vm->events->len; i++) {
        g_free(g_array_index(vm->events, VfioEvent, i).state);
    }
    g_array_free(vm->events, true);
    unlink(vm->log);
    unlink(link);
    rmdir(vm->dir);
    g_free(vm->log);
    g_free(vm->dir);
    g_free(vm);
}

/* Let QEMU deliver the events it has sent so far. */
static void vm_poll(TestVM *vm)
{
    qobject_unref(qtest_qmp(vm->qts, "{ 'execute': 'query-status' }"));
}

/*
 * Wait until @count VFIO events have arrived, or until none has arrived
 * for QUIET_US: fewer events than expected then fail the check quickly.
 */
static void vm_wait_events(TestVM *vm, guint count)
{
    int64_t now = g_get_monotonic_time();
    int64_t deadline = now + WAIT_US;
    int64_t quiet = now + QUIET_US;
    guint seen = vm->events->len;

    vm_poll(vm);
    while (vm->events->len < count && now < deadline && now < quiet) {
        g_usleep(POLL_US);
        vm_poll(vm);
        now = g_get_monotonic_time();
        if (vm->events->len != seen) {
            seen = vm->events->len;
            quiet = now + QUIET_US;
        }
    }
}

static char *vm_events_str(TestVM *vm)
{
    GString *s = g_string_new(NULL);
    guint i;

    for (i = 0; i < vm->events->len; i++) {
        VfioEvent *ev = &g_array_index(vm->events, VfioEvent, i);

        g_string_append_printf(s, "%s%s %s", i ? ", " : "",
                               ev->prepare ? "prepare" : "done", ev->state);
    }
    return g_string_free(s, false);
}

/* The MIG_DEVICE_STATE requests the fake device logged, in order. */
static GPtrArray *vm_transitions(TestVM *vm)
{
    GPtrArray *list = g_ptr_array_new();
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    int i;

    if (!g_file_get_contents(vm->log, &text, NULL, NULL)) {
        return list;
    }
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], " ", -1);
        Transition *t;

        if (g_strv_length(f) < 7 || strcmp(f[0], "transition")) {
            continue;
        }
        t = g_new0(Transition, 1);
        t->to = g_strdup(f[3]);
        t->begin_us = g_ascii_strtoll(f[4], NULL, 10);
        t->end_us = g_ascii_strtoll(f[5], NULL, 10);
        t->result = g_strdup(f[6]);
        g_ptr_array_add(list, t);
    }
    return list;
}

/*
 * The first "save" (@record "save") or "load" record of the device log:
 * its byte count and checksum, and for "load" the fake's verdict.
 */
static char *vm_state_record(TestVM *vm, const char *record)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    int i;

    g_assert_true(g_file_get_contents(vm->log, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], " ", 5);

        if (g_strv_length(f) >= 4 && !strcmp(f[0], record)) {
            return g_strjoinv(" ", f + 2);
        }
    }
    return NULL;
}

static void transitions_free(GPtrArray *list)
{
    guint i;

    for (i = 0; i < list->len; i++) {
        Transition *t = g_ptr_array_index(list, i);

        g_free(t->to);
        g_free(t->result);
        g_free(t);
    }
    g_ptr_array_free(list, true);
}

/* "stop-copy" -> "STOP_COPY" */
static char *kernel_state(const char *qapi_state)
{
    char *s = g_ascii_strup(qapi_state, -1);

    g_strdelimit(s, "-", '_');
    return s;
}

/*
 * Every completion event is directly preceded by the prepare event for
 * the same state (@recovery: except after a failed transition, where the
 * completion may report another state), and every prepare event is
 * followed by a completion.  Against the device log: the transitions the
 * device saw once QMP was up are exactly the ones announced, one per
 * prepare event and in the same order, and each prepare event was sent
 * before its transition began.  With @recovery, a failed transition may
 * be followed by one that puts the device in the state of the completion,
 * which QEMU requests before sending that completion and does not
 * announce.
 */
static void check_pairs(TestVM *vm, bool recovery)
{
    GPtrArray *transitions = vm_transitions(vm);
    guint i, next = vm->early;

    g_assert_cmpint(vm->events->len % 2, ==, 0);
    for (i = 0; i < vm->events->len; i += 2) {
        VfioEvent *prep = &g_array_index(vm->events, VfioEvent, i);
        VfioEvent *done = &g_array_index(vm->events, VfioEvent, i + 1);
        g_autofree char *announced = kernel_state(prep->state);
        g_autofree char *reached = kernel_state(done->state);
        Transition *t;

        g_assert_true(prep->prepare);
        g_assert_false(done->prepare);
        if (!recovery) {
            g_assert_cmpstr(done->state, ==, prep->state);
        }
        g_assert_cmpint(prep->time_us, <=, done->time_us);

        g_assert_cmpuint(next, <, transitions->len);
        t = g_ptr_array_index(transitions, next++);
        g_assert_cmpstr(t->to, ==, announced);
        g_assert_cmpint(prep->time_us, <=, t->begin_us);
        if (!strcmp(t->result, "ok")) {
            g_assert_cmpint(done->time_us, >=, t->end_us);
            continue;
        }
        if (recovery && next < transitions->len) {
            t = g_ptr_array_index(transitions, next);
            if (!strcmp(t->to, reached) && t->begin_us <= done->time_us) {
                next++;
            }
        }
    }
    g_assert_cmpuint(next, ==, transitions->len);
    transitions_free(transitions);
}

static void check_events(TestVM *vm, const char *expected)
{
    g_autofree char *seen = vm_events_str(vm);

    /* The sequence goes to the TAP log, for people and for qseries. */
    g_test_message("%s events: %s", vm->name, seen);
    g_assert_cmpstr(seen, ==, expected);
    check_pairs(vm, false);
}

static guint count_events(const char *expected)
{
    g_auto(GStrv) parts = g_strsplit(expected, ",", -1);

    return expected[0] ? g_strv_length(parts) : 0;
}

static void vm_expect(TestVM *vm, const char *expected)
{
    vm_wait_events(vm, count_events(expected));
    check_events(vm, expected);
}

static char *migration_status(TestVM *vm)
{
    QDict *rsp = qtest_qmp(vm->qts, "{ 'execute': 'query-migrate' }");
    QDict *ret = qdict_get_qdict(rsp, "return");
    char *status = g_strdup(qdict_get_try_str(ret, "status"));

    qobject_unref(rsp);
    return status;
}

static char *wait_migration_end(TestVM *vm)
{
    int64_t deadline = g_get_monotonic_time() + WAIT_US;
    char *status = NULL;

    do {
        g_free(status);
        g_usleep(POLL_US);
        status = migration_status(vm);
    } while (g_strcmp0(status, "completed") && g_strcmp0(status, "failed") &&
             g_get_monotonic_time() < deadline);
    return status;
}

static bool vm_running(TestVM *vm)
{
    QDict *rsp = qtest_qmp(vm->qts, "{ 'execute': 'query-status' }");
    bool running = qdict_get_bool(qdict_get_qdict(rsp, "return"), "running");

    qobject_unref(rsp);
    return running;
}

static void test_stop_cont(void)
{
    TestVM *vm = vm_start("vm", NULL, NULL);

    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'stop' }");
    vm_expect(vm, "prepare stop, done stop");
    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'cont' }");
    vm_expect(vm, "prepare stop, done stop, prepare running, done running");
    vm_quit(vm);
}

/* No prepare event when the device is already in the requested state. */
static void test_no_op(void)
{
    TestVM *vm = vm_start("vm", NULL, "-S");
    GPtrArray *transitions;

    /* The device starts RUNNING: starting the VM changes nothing. */
    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'cont' }");
    g_assert_true(vm_running(vm));
    vm_poll(vm);
    check_events(vm, "");
    transitions = vm_transitions(vm);
    g_assert_cmpint(transitions->len, ==, 0);
    transitions_free(transitions);
    vm_quit(vm);
}

typedef struct MigrateCase {
    const char *flags;      /* FAKEVFIO_MIGRATION_FLAGS */
    const char *source;     /* expected events on the source */
    const char *dest;       /* expected events on the destination */
} MigrateCase;

/* A source and a destination VM, migrating over a unix socket. */
typedef struct Migration {
    TestVM *src;
    TestVM *dst;
    char *dir;
    char *sock;
} Migration;

static void migration_start(Migration *m, const char *const *src_env,
                            const char *const *dst_env)
{
    g_autofree char *uri = NULL;
    g_autofree char *quoted = NULL;
    g_autofree char *incoming = NULL;

    m->dir = g_dir_make_tmp("vfio-prepare-mig-XXXXXX", NULL);
    g_assert(m->dir);
    m->sock = g_build_filename(m->dir, "mig.sock", NULL);
    uri = g_strdup_printf("unix:%s", m->sock);
    quoted = g_shell_quote(uri);
    incoming = g_strdup_printf("-incoming %s", quoted);
    m->src = vm_start("source", src_env, NULL);
    m->dst = vm_start("destination", dst_env, incoming);
}

/* Migrate and return the final status of the source. */
static char *migration_run(Migration *m)
{
    g_autofree char *uri = g_strdup_printf("unix:%s", m->sock);

    qtest_qmp_assert_success(m->src->qts,
                             "{ 'execute': 'migrate',"
                             "  'arguments': { 'uri': %s } }", uri);
    return wait_migration_end(m->src);
}

static void migration_end(Migration *m)
{
    vm_quit(m->src);
    vm_quit(m->dst);
    unlink(m->sock);
    rmdir(m->dir);
    g_free(m->sock);
    g_free(m->dir);
}

static void test_migrate(gconstpointer opaque)
{
    const MigrateCase *c = opaque;
    const char *env[] = { "FAKEVFIO_MIGRATION_FLAGS", c->flags, NULL };
    g_autofree char *status = NULL;
    g_autofree char *saved = NULL;
    g_autofree char *loaded = NULL;
    g_autofree char *expected_load = NULL;
    Migration m;

    migration_start(&m, env, env);
    status = migration_run(&m);
    g_assert_cmpstr(status, ==, "completed");
    vm_expect(m.src, c->source);
    vm_expect(m.dst, c->dest);
    g_assert_true(vm_running(m.dst));

    /* The device state arrived byte for byte: same size and checksum. */
    saved = vm_state_record(m.src, "save");
    loaded = vm_state_record(m.dst, "load");
    g_assert_nonnull(saved);
    expected_load = g_strdup_printf("%s ok", saved);
    g_assert_cmpstr(loaded, ==, expected_load);

    migration_end(&m);
}

/*
 * A failed PRE_COPY -> STOP_COPY on the source: the prepare event for
 * stop-copy is followed by a completion for the state the device was
 * recovered to, the migration fails and the source keeps running.
 */
static void test_failure(void)
{
    const char *src_env[] = { "FAKEVFIO_FAIL", "PRE_COPY>STOP_COPY=EIO",
                              NULL };
    g_autofree char *status = NULL;
    g_autofree char *seen = NULL;
    VfioEvent *prep, *done;
    Migration m;

    migration_start(&m, src_env, NULL);
    qtest_set_expected_status(m.dst->qts, EXIT_FAILURE);
    status = migration_run(&m);
    g_assert_cmpstr(status, ==, "failed");
    g_assert_true(vm_running(m.src));

    vm_wait_events(m.src, 4);
    seen = vm_events_str(m.src);
    g_test_message("%s events: %s", m.src->name, seen);
    g_assert_cmpint(m.src->events->len, >=, 4);
    prep = &g_array_index(m.src->events, VfioEvent, 2);
    done = &g_array_index(m.src->events, VfioEvent, 3);
    g_assert_true(prep->prepare);
    g_assert_cmpstr(prep->state, ==, "stop-copy");
    g_assert_false(done->prepare);
    g_assert_cmpstr(done->state, !=, "stop-copy");
    check_pairs(m.src, true);

    migration_end(&m);
}

static const MigrateCase migrate_cases[] = {
    {
        .flags = "stop_copy,pre_copy",
        .source = "prepare pre-copy, done pre-copy, "
                  "prepare stop-copy, done stop-copy, prepare stop, done stop",
        .dest = "prepare resuming, done resuming, "
                "prepare running, done running",
    }, {
        .flags = "stop_copy",
        .source = "prepare stop, done stop, "
                  "prepare stop-copy, done stop-copy, prepare stop, done stop",
        .dest = "prepare resuming, done resuming, "
                "prepare running, done running",
    }, {
        .flags = "stop_copy,p2p,pre_copy",
        .source = "prepare pre-copy, done pre-copy, "
                  "prepare pre-copy-p2p, done pre-copy-p2p, "
                  "prepare stop-copy, done stop-copy, prepare stop, done stop",
        .dest = "prepare resuming, done resuming, "
                "prepare running-p2p, done running-p2p, "
                "prepare running, done running",
    },
};

static const char *const migrate_names[] = {
    "pre-copy", "stop-copy", "p2p",
};

int main(int argc, char **argv)
{
    int i;

    g_test_init(&argc, &argv, NULL);

    fake_lib = g_getenv("QTEST_VFIO_FAKE");
    if (!fake_lib || !g_file_test(fake_lib, G_FILE_TEST_EXISTS)) {
        g_test_message("Skipping: QTEST_VFIO_FAKE does not name a fake VFIO "
                       "LD_PRELOAD library");
        return g_test_run();
    }
    if (!qtest_has_device("vfio-pci")) {
        g_test_message("Skipping: vfio-pci is not built in");
        return g_test_run();
    }

    qtest_add_func("/vfio-migration-prepare/stop-cont", test_stop_cont);
    qtest_add_func("/vfio-migration-prepare/no-op", test_no_op);
    for (i = 0; i < ARRAY_SIZE(migrate_cases); i++) {
        g_autofree char *path =
            g_strdup_printf("/vfio-migration-prepare/migrate/%s",
                            migrate_names[i]);

        qtest_add_data_func(path, &migrate_cases[i], test_migrate);
    }
    qtest_add_func("/vfio-migration-prepare/failure", test_failure);
    return g_test_run();
}
