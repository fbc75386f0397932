import FoundationEssentials
import ImageFormats

/// Keeping secrets out of messages.
///
/// A presigned S3 URL or an Azure SAS URL carries its credential in the query
/// string (`X-Amz-Signature=…`, `sig=…`): whoever reads a log line holding it can
/// write to, and often read, the evidence. Every URL this module prints goes
/// through `redactedURL(_:)`, and every text a server sent back through
/// `redactedText(_:secrets:)`; both also escape control characters.
public enum Redaction {
    /// Query parameters whose values are credentials wherever they appear.
    static let secretParameters: [String] = [
        "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
        "x-goog-signature", "x-goog-credential", "awsaccesskeyid", "googleaccessid", "token",
    ]

    /// `url` without its query string, fragment and user information, escaped for a log.
    ///
    /// `https://acct.blob.core.windows.net/c/image.lime?sv=2022&sig=abc` becomes
    /// `https://acct.blob.core.windows.net/c/image.lime`.
    public static func redactedURL(_ url: String) -> String {
        escapedForLog(strippedURL(url))
    }

    /// `url` without query, fragment and user information, not yet escaped.
    static func strippedURL(_ url: String) -> String {
        var text = Substring(url)
        if let end = text.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            text = text[..<end]
        }
        // user:password@ between "//" and the first "/" after it
        if let schemeEnd = text.firstRange(of: "://") {
            let authorityStart = schemeEnd.upperBound
            let authorityEnd = text[authorityStart...].firstIndex(of: "/") ?? text.endIndex
            if let at = text[authorityStart..<authorityEnd].lastIndex(of: "@") {
                text = text[..<authorityStart] + text[text.index(after: at)...]
            }
        }
        return String(text)
    }

    /// The secrets of `url` to scrub from any text: its whole query string, in raw and
    /// percent-decoded form, and every parameter value of 8 characters or more.
    public static func secrets(of url: String) -> [String] {
        guard let questionMark = url.firstIndex(of: "?") else { return [] }
        var query = url[url.index(after: questionMark)...]
        if let hash = query.firstIndex(of: "#") { query = query[..<hash] }
        guard !query.isEmpty else { return [] }
        var found = [String(query), percentDecoded(String(query))]
        for pair in query.split(separator: "&") {
            guard let equals = pair.firstIndex(of: "=") else { continue }
            let value = String(pair[pair.index(after: equals)...])
            if value.count >= 8 {
                found.append(value)
                found.append(percentDecoded(value))
            }
        }
        // Longest first, so a query string goes before the values inside it.
        return Array(Set(found.filter { !$0.isEmpty })).sorted { $0.count > $1.count }
    }

    /// Text from a server (or any message) with secrets scrubbed and control characters escaped.
    ///
    /// - Parameters:
    ///   - text: the text, for example an XML error body.
    ///   - secrets: exact strings to replace (from `secrets(of:)`).
    ///   - limit: characters kept; longer text is cut with "…".
    /// - Returns: the text with each secret, each URL's query string and each
    ///   credential parameter's value replaced by `[redacted]`.
    public static func redactedText(_ text: String, secrets: [String] = [], limit: Int = 1000) -> String {
        var result = text
        for secret in secrets where !secret.isEmpty {
            result = result.replacing(secret, with: "[redacted]")
        }
        result = strippingURLQueries(result)
        result = redactingSecretParameters(result)
        if result.count > limit {
            result = String(result.prefix(limit)) + "…"
        }
        return escapedForLog(result)
    }

    /// Removes the query string of every `http://` or `https://` URL in `text`.
    static func strippingURLQueries(_ text: String) -> String {
        var output = ""
        var rest = Substring(text)
        while let start = firstURLStart(in: rest) {
            output += rest[..<start]
            let urlEnd = rest[start...].firstIndex(where: isURLTerminator) ?? rest.endIndex
            let url = rest[start..<urlEnd]
            if let question = url.firstIndex(of: "?") {
                output += url[..<question]
                output += "?[redacted]"
            } else {
                output += url
            }
            rest = rest[urlEnd...]
        }
        output += rest
        return output
    }

    /// Replaces the value of every credential parameter (`sig=`, `X-Amz-Signature=`, …) in `text`.
    static func redactingSecretParameters(_ text: String) -> String {
        let scalars = Array(text.unicodeScalars)
        let lower = Array(text.lowercased().unicodeScalars)
        guard lower.count == scalars.count else { return text }
        var output = String.UnicodeScalarView()
        var index = 0
        while index < scalars.count {
            var matched = false
            let atBoundary = index == 0 || !isNameCharacter(scalars[index - 1])
            if atBoundary {
                for name in secretParameters {
                    let pattern = Array((name + "=").unicodeScalars)
                    guard index + pattern.count <= lower.count, Array(lower[index..<index + pattern.count]) == pattern else {
                        continue
                    }
                    output.append(contentsOf: scalars[index..<index + pattern.count])
                    index += pattern.count
                    let valueStart = index
                    while index < scalars.count && !isValueTerminator(scalars[index]) { index += 1 }
                    if index > valueStart { output.append(contentsOf: "[redacted]".unicodeScalars) }
                    matched = true
                    break
                }
            }
            if !matched {
                output.append(scalars[index])
                index += 1
            }
        }
        return String(output)
    }

    /// `text` with its percent-escapes decoded by `URLComponents`; `text` itself if
    /// it holds an invalid escape (a secret is scrubbed in the form it was given, too).
    static func percentDecoded(_ text: String) -> String {
        URLComponents(string: "?" + text)?.query ?? text
    }

    private static func firstURLStart(in text: Substring) -> Substring.Index? {
        let http = text.firstRange(of: "http://")?.lowerBound
        let https = text.firstRange(of: "https://")?.lowerBound
        switch (http, https) {
        case (let a?, let b?): return min(a, b)
        case (let a?, nil): return a
        case (nil, let b?): return b
        case (nil, nil): return nil
        }
    }

    private static func isURLTerminator(_ character: Character) -> Bool {
        character.isWhitespace || "\"'<>`".contains(character)
    }

    private static func isValueTerminator(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "&" || scalar == "\"" || scalar == "'" || scalar == "<" || scalar == ">" || scalar == " "
            || scalar.properties.isWhitespace || scalar.value < 0x20
    }

    private static func isNameCharacter(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_"
    }

}
