/*
 * no_entry.c — a perfectly valid shared library that is NOT a Pylon plugin: it exports
 * no `pylon_plugin_entry` symbol. The host must refuse it with a reason naming the
 * missing symbol (Tests/PylonHostTests/PluginABITests.swift).
 */
int pylon_fixture_not_a_plugin(int x);

int pylon_fixture_not_a_plugin(int x) {
    return x + 1;
}
