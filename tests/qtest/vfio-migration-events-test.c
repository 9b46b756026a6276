/*
 * QTest for the VFIO_MIGRATION events of vfio-pci migration-events=on
 *
 * A vfio-pci device with migration-events=on sends a VFIO_MIGRATION event
 * each time QEMU changes the migration state of the device, and one with
 * device-state "pre-copy-p2p-prepare" right before it asks the device to
 * move to PRE_COPY_P2P.  This test checks the exact sequence of
 * device-state values on the source and the destination of stop/cont,
 * of migrations with and without pre-copy and P2P, and of migrations
 * where the device fails a state change.  Against the log of the device,
 * it checks that every state change the device saw is accounted for by
 * the events and that each pre-copy-p2p-prepare event was sent before
 * the device began its move to PRE_COPY_P2P.
 *
 * No CI machine has a VFIO device that can migrate, so the device is a
 * user-space fake of the Linux VFIO interface (vfio-fake.c), built next
 * to this test as libvfio-fake.so and loaded into QEMU with LD_PRELOAD.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"

#define FAKE_LIB "libvfio-fake.so"
#define DEVICE_ID "vfio0"
#define WAIT_US (30 * G_USEC_PER_SEC)
#define QUIET_US (3 * G_USEC_PER_SEC)
#define POLL_US (10 * 1000)

/*
 * A case: one VM that is stopped and continued, or a migration from a
 * source to a destination VM.  The expected device-state values of the
 * VFIO_MIGRATION events are listed in order, each with the code path of
 * hw/vfio/migration.c that sends it.  "prepare" is the send before the
 * ioctl in vfio_migration_set_state() for PRE_COPY_P2P; every other value
 * is sent by vfio_migration_set_device_state() once the device is in that
 * state.
 */
typedef struct EventCase {
    const char *path;
    const char *flags;              /* FAKEVFIO_MIGRATION_FLAGS */
    const char *delay;              /* FAKEVFIO_DELAY of the source */
    const char *fail;               /* FAKEVFIO_FAIL of the source */
    const char *status;             /* final status; NULL: no migration */
    const char *const *source;      /* or the VM that is stopped */
    const char *const *dest;
} EventCase;

/* The source and stop/cont VMs start with -S, then get a "cont". */

static const char *const stop_cont[] = {
    /* cont: device already RUNNING, vfio_migration_set_state() no-op */
    "stop",             /* stop: vfio_vmstate_change(), !running */
    "running",          /* cont: vfio_vmstate_change(), running */
    NULL
};

static const char *const stop_cont_p2p[] = {
    "running-p2p",      /* cont: vfio_vmstate_change_prepare() */
    "running",          /* cont: vfio_vmstate_change(), running */
    "running-p2p",      /* stop: vfio_vmstate_change_prepare() */
    "stop",             /* stop: vfio_vmstate_change(), not pre-copy */
    "running-p2p",      /* cont: vfio_vmstate_change_prepare() */
    "running",          /* cont: vfio_vmstate_change(), running */
    NULL
};

static const char *const src_precopy[] = {
    /* cont: device already RUNNING */
    "pre-copy",         /* vfio_save_setup(), RUNNING -> PRE_COPY */
    "stop-copy",        /* vfio_vmstate_change(), FINISH_MIGRATE */
    /* vfio_save_complete_precopy(): already STOP_COPY */
    "stop",             /* vfio_save_cleanup(), STOP_COPY -> STOP */
    NULL
};

static const char *const src_no_precopy[] = {
    /* cont: device already RUNNING; vfio_save_setup(): no PRE_COPY */
    "stop",             /* vfio_vmstate_change(), not pre-copy */
    "stop-copy",        /* vfio_save_complete_precopy() */
    "stop",             /* vfio_save_cleanup(), STOP_COPY -> STOP */
    NULL
};

static const char *const src_p2p_precopy[] = {
    "running-p2p",      /* cont: vfio_vmstate_change_prepare() */
    "running",          /* cont: vfio_vmstate_change(), running */
    "pre-copy",         /* vfio_save_setup(), RUNNING -> PRE_COPY */
    "pre-copy-p2p-prepare", /* vfio_vmstate_change_prepare(), prepare */
    "pre-copy-p2p",     /* vfio_vmstate_change_prepare(), PRE_COPY */
    "stop-copy",        /* vfio_vmstate_change(), FINISH_MIGRATE */
    /* vfio_save_complete_precopy(): already STOP_COPY */
    "stop",             /* vfio_save_cleanup(), STOP_COPY -> STOP */
    NULL
};

static const char *const src_p2p_no_precopy[] = {
    "running-p2p",      /* cont: vfio_vmstate_change_prepare() */
    "running",          /* cont: vfio_vmstate_change(), running */
    /* vfio_save_setup(): no PRE_COPY */
    "running-p2p",      /* vfio_vmstate_change_prepare(), not PRE_COPY */
    "stop",             /* vfio_vmstate_change(), not pre-copy */
    "stop-copy",        /* vfio_save_complete_precopy() */
    "stop",             /* vfio_save_cleanup(), STOP_COPY -> STOP */
    NULL
};

/*
 * PRE_COPY -> PRE_COPY_P2P fails.  vfio_vmstate_change_prepare() asks with
 * recover state ERROR, so vfio_migration_set_state() resets the device,
 * and sets the error on the migration file.  The completion goes on, but
 * the "ram" handler comes first in qemu_savevm_state_complete_precopy():
 * ram_save_complete() returns that error (from qemu_fflush()), so
 * vfio_save_complete_precopy() is never called.  The migration fails and
 * migration_iteration_finish() starts the VM again.
 */
static const char *const src_fail_p2p[] = {
    "running-p2p",      /* cont: vfio_vmstate_change_prepare() */
    "running",          /* cont: vfio_vmstate_change(), running */
    "pre-copy",         /* vfio_save_setup(), RUNNING -> PRE_COPY */
    "pre-copy-p2p-prepare", /* vfio_vmstate_change_prepare(), prepare */
    "running",          /* vfio_migration_set_state(), reset_device */
    "stop",             /* vfio_vmstate_change(), RUNNING: not pre-copy */
    /* vfio_save_complete_precopy(): not called */
    "running-p2p",      /* vm_start(): vfio_vmstate_change_prepare() */
    "running",          /* vm_start(): vfio_vmstate_change(), running */
    /* vfio_save_cleanup(): not STOP_COPY; notifier: already RUNNING */
    NULL
};

/*
 * PRE_COPY_P2P -> STOP_COPY fails: vfio_vmstate_change() asks with recover
 * state ERROR, so the device is reset and the migration file gets the
 * error; then as above.
 */
static const char *const src_fail_after_p2p[] = {
    "running-p2p",      /* cont: vfio_vmstate_change_prepare() */
    "running",          /* cont: vfio_vmstate_change(), running */
    "pre-copy",         /* vfio_save_setup(), RUNNING -> PRE_COPY */
    "pre-copy-p2p-prepare", /* vfio_vmstate_change_prepare(), prepare */
    "pre-copy-p2p",     /* vfio_vmstate_change_prepare(), PRE_COPY */
    "running",          /* vfio_migration_set_state(), reset_device */
    /* vfio_save_complete_precopy(): not called */
    "running-p2p",      /* vm_start(): vfio_vmstate_change_prepare() */
    "running",          /* vm_start(): vfio_vmstate_change(), running */
    /* vfio_save_cleanup(): not STOP_COPY; notifier: already RUNNING */
    NULL
};

/* The destination starts with -incoming defer: no vm_start() before. */

static const char *const dst_migrated[] = {
    "resuming",         /* vfio_load_setup(), RUNNING -> RESUMING */
    "running",          /* vm_start(): vfio_vmstate_change(), running */
    NULL
};

static const char *const dst_migrated_p2p[] = {
    "resuming",         /* vfio_load_setup(), RUNNING -> RESUMING */
    "running-p2p",      /* vm_start(): vfio_vmstate_change_prepare() */
    "running",          /* vm_start(): vfio_vmstate_change(), running */
    NULL
};

static const char *const dst_failed[] = {
    "resuming",         /* vfio_load_setup(), RUNNING -> RESUMING */
    /* the load fails: vfio_load_cleanup() changes no state */
    NULL
};

#define P2P_PRECOPY "stop_copy,p2p,pre_copy"

static const EventCase cases[] = {
    {
        .path = "stop-cont",
        .flags = "stop_copy,pre_copy",
        .source = stop_cont,
    }, {
        .path = "stop-cont/p2p",
        .flags = P2P_PRECOPY,
        .source = stop_cont_p2p,
    }, {
        .path = "migrate/precopy",
        .flags = "stop_copy,pre_copy",
        .status = "completed",
        .source = src_precopy,
        .dest = dst_migrated,
    }, {
        .path = "migrate/no-precopy",
        .flags = "stop_copy",
        .status = "completed",
        .source = src_no_precopy,
        .dest = dst_migrated,
    }, {
        /* The delay makes a prepare event sent after the ioctl late. */
        .path = "migrate/p2p-precopy",
        .flags = P2P_PRECOPY,
        .delay = "PRE_COPY>PRE_COPY_P2P=20",
        .status = "completed",
        .source = src_p2p_precopy,
        .dest = dst_migrated_p2p,
    }, {
        .path = "migrate/p2p-no-precopy",
        .flags = "stop_copy,p2p",
        .status = "completed",
        .source = src_p2p_no_precopy,
        .dest = dst_migrated_p2p,
    }, {
        .path = "failure/pre-copy-p2p",
        .flags = P2P_PRECOPY,
        .fail = "PRE_COPY>PRE_COPY_P2P=EIO",
        .status = "failed",
        .source = src_fail_p2p,
        .dest = dst_failed,
    }, {
        .path = "failure/after-pre-copy-p2p",
        .flags = P2P_PRECOPY,
        .fail = "PRE_COPY_P2P>STOP_COPY=EIO",
        .status = "failed",
        .source = src_fail_after_p2p,
        .dest = dst_failed,
    },
};

typedef struct VfioEvent {
    char *state;                /* device-state */
    int64_t time_us;            /* QEMU's timestamp, CLOCK_REALTIME */
} VfioEvent;

typedef struct TestVM {
    const char *name;
    QTestState *qts;
    GArray *events;             /* of VfioEvent, in arrival order */
    char *dir;                  /* the fake sysfs device and the log */
    char *log;
} TestVM;

static char *fake_lib;
static const char *skip_reason;

static bool record_event(QTestState *qts, const char *name, QDict *event,
                         void *opaque)
{
    TestVM *vm = opaque;
    QDict *data, *stamp;
    VfioEvent ev;

    if (strcmp(name, "VFIO_MIGRATION")) {
        return true;
    }
    data = qdict_get_qdict(event, "data");
    stamp = qdict_get_qdict(event, "timestamp");
    g_assert(data && stamp);
    g_assert_cmpstr(qdict_get_try_str(data, "device-id"), ==, DEVICE_ID);
    ev.state = g_strdup(qdict_get_str(data, "device-state"));
    ev.time_us = qdict_get_int(stamp, "seconds") * G_USEC_PER_SEC +
                 qdict_get_int(stamp, "microseconds");
    g_array_append_val(vm->events, ev);
    return true;
}

static void env_set(const char *name, const char *value)
{
    if (value) {
        g_setenv(name, value, true);
    } else {
        g_unsetenv(name);
    }
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

/* Start QEMU with one fake vfio-pci device, the fake only in its env. */
static TestVM *vm_launch(const char *name, const char *flags,
                         const char *delay, const char *fail,
                         const char *extra_args)
{
    TestVM *vm = g_new0(TestVM, 1);
    g_autofree char *link = NULL;
    g_autofree char *sysfsdev = NULL;
    g_autofree char *old_preload = g_strdup(g_getenv("LD_PRELOAD"));
    g_autofree char *preload = NULL;

    vm->name = name;
    vm->events = g_array_new(false, true, sizeof(VfioEvent));
    vm->dir = g_dir_make_tmp("vfio-events-XXXXXX", NULL);
    g_assert(vm->dir);
    /* Only the group number matters: the link may dangle. */
    link = g_build_filename(vm->dir, "iommu_group", NULL);
    g_assert_cmpint(symlink("../../../kernel/iommu_groups/4242", link), ==, 0);
    vm->log = g_build_filename(vm->dir, "fakevfio.log", NULL);
    sysfsdev = option_path(vm->dir);
    /* Kept when the test fails: vm_quit() is not reached then. */
    g_test_message("%s fake VFIO log: %s", name, vm->log);

    preload = old_preload ? g_strdup_printf("%s:%s", fake_lib, old_preload)
                          : g_strdup(fake_lib);
    g_setenv("LD_PRELOAD", preload, true);
    g_setenv("FAKEVFIO_LOG", vm->log, true);
    env_set("FAKEVFIO_MIGRATION_FLAGS", flags);
    env_set("FAKEVFIO_DELAY", delay);
    env_set("FAKEVFIO_FAIL", fail);
    vm->qts = qtest_initf("-machine q35 -nodefaults -m 64M "
                          "-device vfio-pci,id=" DEVICE_ID ",sysfsdev=%s,"
                          "enable-migration=on,migration-events=on %s",
                          sysfsdev, extra_args);
    env_set("LD_PRELOAD", old_preload);
    g_unsetenv("FAKEVFIO_LOG");
    g_unsetenv("FAKEVFIO_MIGRATION_FLAGS");
    g_unsetenv("FAKEVFIO_DELAY");
    g_unsetenv("FAKEVFIO_FAIL");
    qtest_qmp_set_event_callback(vm->qts, record_event, vm);
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
 * Wait until @count events have arrived, or none for QUIET_US (too few
 * then fail quickly), then a little more for any unexpected extra one.
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
    g_usleep(10 * POLL_US);
    vm_poll(vm);
}

static bool vm_running(TestVM *vm)
{
    QDict *rsp = qtest_qmp(vm->qts, "{ 'execute': 'query-status' }");
    bool running = qdict_get_bool(qdict_get_qdict(rsp, "return"), "running");

    qobject_unref(rsp);
    return running;
}

static char *migration_status(TestVM *vm)
{
    QDict *rsp = qtest_qmp(vm->qts, "{ 'execute': 'query-migrate' }");
    char *status;

    status = g_strdup(qdict_get_try_str(qdict_get_qdict(rsp, "return"),
                                        "status"));
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

/* "STOP_COPY" -> "stop-copy" */
static char *qapi_state(const char *kernel_state)
{
    char *s = g_ascii_strdown(kernel_state, -1);

    g_strdelimit(s, "_", '-');
    return s;
}

/*
 * An event that the device log calls for: the completion of a state
 * change (sent at or after @time_us, the end of the change), or a
 * pre-copy-p2p-prepare (sent at or before @time_us, its begin).
 */
typedef struct LogEvent {
    char *state;
    bool prepare;
    int64_t time_us;
} LogEvent;

/*
 * The events that the device log calls for, in order.  Each SET of
 * MIG_DEVICE_STATE to PRE_COPY_P2P calls for a pre-copy-p2p-prepare
 * before it; each SET that succeeded, for the completion of its state.
 * A failed SET calls for nothing itself: QEMU then asks for the recover
 * state (a SET again) or resets the device, which calls for "running".
 * A reset that follows no failed SET (a machine reset) calls for nothing.
 */
static GArray *vm_log_events(TestVM *vm)
{
    GArray *list = g_array_new(false, true, sizeof(LogEvent));
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    bool failed = false;
    guint begins = 0, sets = 0;
    int i;

    g_assert_true(g_file_get_contents(vm->log, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], " ", -1);
        guint n = g_strv_length(f);
        LogEvent ev = { 0 };

        if (n == 5 && !strcmp(f[0], "begin")) {
            begins++;
        } else if (n == 7 && !strcmp(f[0], "transition")) {
            sets++;
            if (!strcmp(f[3], "PRE_COPY_P2P")) {
                ev.state = g_strdup("pre-copy-p2p-prepare");
                ev.prepare = true;
                ev.time_us = g_ascii_strtoll(f[4], NULL, 10);
                g_array_append_val(list, ev);
            }
            failed = strcmp(f[6], "ok");
            if (!failed) {
                ev.state = qapi_state(f[3]);
                ev.prepare = false;
                ev.time_us = g_ascii_strtoll(f[5], NULL, 10);
                g_array_append_val(list, ev);
            }
        } else if (n == 3 && !strcmp(f[0], "reset") && failed) {
            failed = false;
            ev.state = g_strdup("running");
            ev.time_us = g_ascii_strtoll(f[2], NULL, 10);
            g_array_append_val(list, ev);
        }
    }
    /* Every SET began and ended. */
    g_assert_cmpuint(begins, ==, sets);
    return list;
}

static void log_events_free(GArray *list)
{
    guint i;

    for (i = 0; i < list->len; i++) {
        g_free(g_array_index(list, LogEvent, i).state);
    }
    g_array_free(list, true);
}

static char *vm_events_str(TestVM *vm)
{
    GString *s = g_string_new(NULL);
    guint i;

    for (i = 0; i < vm->events->len; i++) {
        g_string_append_printf(s, "%s%s", i ? ", " : "",
                               g_array_index(vm->events, VfioEvent, i).state);
    }
    return g_string_free(s, false);
}

static char *log_events_str(GArray *list)
{
    GString *s = g_string_new(NULL);
    guint i;

    for (i = 0; i < list->len; i++) {
        g_string_append_printf(s, "%s%s", i ? ", " : "",
                               g_array_index(list, LogEvent, i).state);
    }
    return g_string_free(s, false);
}

/*
 * The events of @vm are exactly @expected; the device log calls for
 * exactly these events, and each was sent in time: a prepare before its
 * SET began, a completion after the device got there.
 */
static void vm_check(TestVM *vm, const char *const *expected)
{
    g_autofree char *want = g_strjoinv(", ", (char **)expected);
    g_autofree char *seen = NULL;
    g_autofree char *from_log = NULL;
    GArray *log_events;
    guint i;

    vm_wait_events(vm, g_strv_length((char **)expected));
    seen = vm_events_str(vm);
    g_test_message("%s events: %s", vm->name, seen);
    g_assert_cmpstr(seen, ==, want);

    log_events = vm_log_events(vm);
    from_log = log_events_str(log_events);
    g_assert_cmpstr(from_log, ==, seen);
    for (i = 0; i < log_events->len; i++) {
        LogEvent *want_ev = &g_array_index(log_events, LogEvent, i);
        VfioEvent *ev = &g_array_index(vm->events, VfioEvent, i);

        if (want_ev->prepare) {
            g_assert_cmpint(ev->time_us, <=, want_ev->time_us);
        } else {
            g_assert_cmpint(ev->time_us, >=, want_ev->time_us);
        }
    }
    log_events_free(log_events);
}

static void test_stop_cont(const EventCase *c)
{
    TestVM *vm = vm_launch("vm", c->flags, c->delay, c->fail, "-S");

    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'cont' }");
    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'stop' }");
    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'cont' }");
    g_assert_true(vm_running(vm));
    vm_check(vm, c->source);
    vm_quit(vm);
}

static void test_migrate(const EventCase *c)
{
    g_autofree char *dir = g_dir_make_tmp("vfio-events-mig-XXXXXX", NULL);
    g_autofree char *sock = NULL;
    g_autofree char *uri = NULL;
    g_autofree char *status = NULL;
    g_autofree char *dst_status = NULL;
    TestVM *src, *dst;

    g_assert(dir);
    sock = g_build_filename(dir, "mig.sock", NULL);
    uri = g_strdup_printf("unix:%s", sock);

    src = vm_launch("source", c->flags, c->delay, c->fail, "-S");
    qtest_qmp_assert_success(src->qts, "{ 'execute': 'cont' }");
    dst = vm_launch("destination", c->flags, NULL, NULL, "-incoming defer");
    /* A failed migration must leave the destination up for its events. */
    qtest_qmp_assert_success(dst->qts,
                             "{ 'execute': 'migrate-incoming',"
                             "  'arguments': { 'uri': %s,"
                             "                 'exit-on-error': false } }",
                             uri);

    qtest_qmp_assert_success(src->qts,
                             "{ 'execute': 'migrate',"
                             "  'arguments': { 'uri': %s } }", uri);
    status = wait_migration_end(src);
    g_assert_cmpstr(status, ==, c->status);
    dst_status = wait_migration_end(dst);
    g_assert_cmpstr(dst_status, ==, c->status);

    vm_check(src, c->source);
    vm_check(dst, c->dest);
    if (!strcmp(c->status, "completed")) {
        g_assert_true(vm_running(dst));
    } else {
        g_assert_true(vm_running(src));
    }

    vm_quit(src);
    vm_quit(dst);
    unlink(sock);
    rmdir(dir);
}

static void test_case(gconstpointer opaque)
{
    const EventCase *c = opaque;

    if (skip_reason) {
        g_test_skip(skip_reason);
        return;
    }
    if (c->status) {
        test_migrate(c);
    } else {
        test_stop_cont(c);
    }
}

/* Why the fake cannot be used here, or NULL */
static const char *find_fake(void)
{
#ifndef CONFIG_LINUX
    return "the fake VFIO device works on Linux hosts only";
#elif defined(QEMU_SANITIZE_ADDRESS) || defined(QEMU_SANITIZE_THREAD)
    return "LD_PRELOAD of the fake VFIO device does not mix with sanitizers";
#else
    g_autofree char *lib = g_test_build_filename(G_TEST_BUILT, FAKE_LIB,
                                                 NULL);

    fake_lib = g_canonicalize_filename(lib, NULL);
    if (!g_file_test(fake_lib, G_FILE_TEST_IS_REGULAR)) {
        return FAKE_LIB " is not built next to the test";
    }
    if (strpbrk(fake_lib, " :")) {
        return "the path of " FAKE_LIB " does not fit in LD_PRELOAD";
    }
    if (!qtest_has_device("vfio-pci")) {
        return "vfio-pci is not built in";
    }
    return NULL;
#endif
}

int main(int argc, char **argv)
{
    int i, ret;

    g_test_init(&argc, &argv, NULL);
    skip_reason = find_fake();

    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        g_autofree char *path =
            g_strdup_printf("/vfio-migration-events/%s", cases[i].path);

        qtest_add_data_func(path, &cases[i], test_case);
    }
    ret = g_test_run();
    g_free(fake_lib);
    return ret;
}
