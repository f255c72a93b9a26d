import PylonJSON

/// `pylon-host plugins`: what a folder would load, without serving.
public enum PluginInspector {
    public struct Report: Sendable {
        public var scan: PluginLoader.Scan
        public var text: String
        public var json: String
    }

    public static func report(directory: String) -> Report {
        let scan = PluginLoader.scan(directory: directory)
        var text = ""
        for p in scan.loaded {
            text += "\(p.fileName)\n  id: \(p.id)\n  version: \(p.version)\n  abi: \(p.abiMajor).\(p.abiMinor)\n"
            text += "  capabilities: \(p.capabilities.joined(separator: ", "))\n  path: \(p.path)\n"
            if !p.description.isEmpty { text += "  description: \(p.description)\n" }
            for w in p.warnings { text += "  warning: \(w)\n" }
        }
        for r in scan.refused { text += "\(r.fileName)\n  refused: \(r.reason)\n  path: \(r.path)\n" }
        if scan.loaded.isEmpty && scan.refused.isEmpty { text += "no plugin files (*.so) in \(directory)\n" }
        let loaded: [JSONValue] = scan.loaded.map { p in
            .object([
                ("file", .string(p.fileName)), ("path", .string(p.path)), ("id", .string(p.id)),
                ("version", .string(p.version)), ("abi", .string("\(p.abiMajor).\(p.abiMinor)")),
                ("capabilities", .array(p.capabilities.map { .string($0) })),
                ("description", .string(p.description)), ("warnings", .array(p.warnings.map { .string($0) })),
            ])
        }
        let refused: [JSONValue] = scan.refused.map {
            .object([("file", .string($0.fileName)), ("path", .string($0.path)), ("reason", .string($0.reason))])
        }
        let json = JSONWriter.string(.object([("plugins", .array(loaded)), ("refused", .array(refused))]))
        return Report(scan: scan, text: text, json: json)
    }
}
