/*
 * QTest testcase for the x-qom-type-info QMP command
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

/* Ask x-qom-type-info about @typename; the command must succeed. */
static QDict *type_info(QTestState *qts, const char *typename)
{
    return qtest_qmp_assert_success_ref(qts,
        "{ 'execute': 'x-qom-type-info',"
        "  'arguments': { 'typename': %s } }", typename);
}

static void test_abstract_type(void)
{
    QTestState *qts = qtest_init("-machine none");
    QDict *info = type_info(qts, "device");

    g_assert_cmpstr(qdict_get_try_str(info, "name"), ==, "device");
    g_assert_true(qdict_get_try_bool(info, "abstract", false));
    g_assert_cmpstr(qdict_get_try_str(info, "parent"), ==, "object");

    qobject_unref(info);
    qtest_quit(qts);
}

static void test_concrete_type(void)
{
    QTestState *qts = qtest_init("-machine none");
    QDict *info = type_info(qts, "container");

    g_assert_cmpstr(qdict_get_try_str(info, "name"), ==, "container");
    /* "abstract" is only present when true */
    g_assert_false(qdict_haskey(info, "abstract"));
    g_assert_cmpstr(qdict_get_try_str(info, "parent"), ==, "object");

    qobject_unref(info);
    qtest_quit(qts);
}

static void test_root_type(void)
{
    QTestState *qts = qtest_init("-machine none");
    QDict *info = type_info(qts, "object");

    g_assert_cmpstr(qdict_get_try_str(info, "name"), ==, "object");
    g_assert_true(qdict_get_try_bool(info, "abstract", false));
    /* the root of the hierarchy has no parent */
    g_assert_false(qdict_haskey(info, "parent"));

    qobject_unref(info);
    qtest_quit(qts);
}

static void test_unknown_type(void)
{
    QTestState *qts = qtest_init("-machine none");
    QDict *resp = qtest_qmp(qts,
        "{ 'execute': 'x-qom-type-info',"
        "  'arguments': { 'typename': 'no-such-type' } }");
    QDict *error = qdict_get_qdict(resp, "error");

    g_assert_nonnull(error);
    g_assert_cmpstr(qdict_get_str(error, "class"), ==, "GenericError");
    g_assert_cmpstr(qdict_get_str(error, "desc"), ==,
                    "Class 'no-such-type' not found");

    qobject_unref(resp);
    qtest_quit(qts);
}

/*
 * Every type that qom-list-types lists is described the same way by
 * x-qom-type-info.
 */
static void test_agrees_with_list(void)
{
    QTestState *qts = qtest_init("-machine none");
    QDict *resp = qtest_qmp(qts,
        "{ 'execute': 'qom-list-types',"
        "  'arguments': { 'abstract': true } }");
    QList *types = qdict_get_qlist(resp, "return");
    QListEntry *entry;
    int count = 0;

    g_assert_nonnull(types);
    QLIST_FOREACH_ENTRY(types, entry) {
        QDict *listed = qobject_to(QDict, qlist_entry_obj(entry));
        const char *name = qdict_get_str(listed, "name");
        QDict *info = type_info(qts, name);

        g_assert_cmpstr(qdict_get_try_str(info, "name"), ==, name);
        g_assert_cmpint(qdict_get_try_bool(info, "abstract", false), ==,
                        qdict_get_try_bool(listed, "abstract", false));
        g_assert_cmpstr(qdict_get_try_str(info, "parent"), ==,
                        qdict_get_try_str(listed, "parent"));
        qobject_unref(info);
        count++;
    }
    g_assert_cmpint(count, >, 0);

    qobject_unref(resp);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/qom-type-info/abstract", test_abstract_type);
    qtest_add_func("/qom-type-info/concrete", test_concrete_type);
    qtest_add_func("/qom-type-info/root", test_root_type);
    qtest_add_func("/qom-type-info/unknown", test_unknown_type);
    qtest_add_func("/qom-type-info/agrees-with-list", test_agrees_with_list);

    return g_test_run();
}
