import PylonJSON

/// A plugin's config as the host passes it to `create` (the manifest's object for the
/// plugin, as JSON text), read with the JSON reader the host uses: the members of the
/// object, in order; empty text is an empty object. Nil when the text is not one JSON
/// object, for the plugin to refuse with its own message.
public func configObject(_ bytes: [UInt8]) -> JSONValue? {
    if bytes.isEmpty { return .object([]) }
    guard let value = try? JSONParser.parse(bytes), case .object = value else { return nil }
    return value
}
