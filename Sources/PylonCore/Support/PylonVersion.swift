public enum PylonVersion {
    public static let string = "0.1.0"
}
