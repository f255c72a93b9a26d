/// The host reads and writes JSON with the PylonJSON module, the one JSON reader and writer
/// it shares with the Swift plugins. Re-exported so every file of the host, and whoever
/// imports the host (pylon-host, the tests), sees `JSONValue` and its parser and writer
/// without importing a second module.
@_exported import PylonJSON
