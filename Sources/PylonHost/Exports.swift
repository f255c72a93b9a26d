/// What an embedder gets with `import PylonHost`: the `Host` (this module), its
/// configuration, manifest and errors (PylonCore) and JSON values (PylonJSON), so that
/// starting a host takes one import. The layers between (plugins, data plane, services,
/// edge) stay the host's own business.
@_exported import PylonCore
@_exported import PylonJSON
