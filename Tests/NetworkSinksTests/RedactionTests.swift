import Testing

@testable import NetworkSinks

struct RedactionTests {
    static let sas =
        "https://acct.blob.core.windows.net/images/host1.lime?sv=2022-11-02&ss=b&srt=o&sp=cw&se=2030-01-01T00:00:00Z&sig=AbCdEf%2BGh1234567890%3D"
    static let presigned =
        "http://127.0.0.1:5000/bucket/image.lime?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0123456789abcdef0123456789abcdef"

    @Test(arguments: [
        (sas, "https://acct.blob.core.windows.net/images/host1.lime"),
        (presigned, "http://127.0.0.1:5000/bucket/image.lime"),
        ("https://user:secret@host.example/path?x=1#frag", "https://host.example/path"),
        ("http://host/plain", "http://host/plain"),
        ("http://host/a#b?c", "http://host/a"),
        // control characters cannot reach the terminal
        ("http://host/evil\u{1b}[2J?sig=x", "http://host/evil\\u{1b}[2J"),
    ])
    func urlsLoseQueryFragmentAndCredentials(url: String, expected: String) {
        #expect(Redaction.redactedURL(url) == expected)
    }

    @Test func serverTextLosesTheSASTokenInAnyForm() {
        let secrets = Redaction.secrets(of: Self.sas)
        let body = """
            AuthenticationFailed: Server failed to authenticate the request. \
            sig=AbCdEf+Gh1234567890= was used with sv=2022-11-02&sig=AbCdEf%2BGh1234567890%3D on \
            https://acct.blob.core.windows.net/images/host1.lime?sv=2022-11-02&sig=AbCdEf%2BGh1234567890%3D
            """
        let text = Redaction.redactedText(body, secrets: secrets)
        #expect(!text.contains("AbCdEf"))
        #expect(!text.contains("Gh1234567890"))
        #expect(text.contains("AuthenticationFailed"))
        #expect(text.contains("https://acct.blob.core.windows.net/images/host1.lime?[redacted]"))
    }

    @Test func credentialParametersAreRedactedEvenForUnknownURLs() {
        let text = Redaction.redactedText(
            "CanonicalQueryString X-Amz-Credential=AKIAOTHER%2Fscope&X-Amz-Signature=feedface&x-amz-date=20250101 sig=zzz")
        #expect(!text.contains("AKIAOTHER"))
        #expect(!text.contains("feedface"))
        #expect(!text.contains("zzz"))
        #expect(text.contains("x-amz-date=20250101"))
    }

    @Test func parameterNamesMatchOnlyWholeNames() {
        // "design=" is not "sig="
        #expect(Redaction.redactedText("design=blue") == "design=blue")
    }

    @Test func longTextIsCutAndControlCharactersEscaped() {
        let text = Redaction.redactedText(String(repeating: "a", count: 2000) + "\u{7}", limit: 10)
        #expect(text == "aaaaaaaaaa…")
        #expect(Redaction.redactedText("bell\u{7}") == "bell\\u{7}")
    }

    @Test func secretsIncludeQueryAndLongValues() {
        let secrets = Redaction.secrets(of: "http://h/p?a=1&token=abcdefghij")
        #expect(secrets.contains("a=1&token=abcdefghij"))
        #expect(secrets.contains("abcdefghij"))
        #expect(!secrets.contains("1"))
        #expect(Redaction.secrets(of: "http://h/p").isEmpty)
    }
}

struct UploadURLTests {
    @Test func parsesHostPortPathAndQuery() throws {
        let url = try UploadURL("https://Acct.blob.core.windows.net:8443/c/b.lime?sv=1&sig=2")
        #expect(url.scheme == "https" && url.host == "acct.blob.core.windows.net" && url.port == 8443)
        #expect(url.path == "/c/b.lime" && url.query == "sv=1&sig=2")
        #expect(url.description == "https://Acct.blob.core.windows.net:8443/c/b.lime")
        #expect(url.namesBlob)
        #expect(url.requestTarget(addingQuery: "comp=block") == "/c/b.lime?sv=1&sig=2&comp=block")
        #expect(url.requestTarget() == "/c/b.lime?sv=1&sig=2")
        #expect(url.hostHeader == "acct.blob.core.windows.net:8443" && url.authority == url.hostHeader)
    }

    @Test func defaultsPortsAndAddsAQueryWhereThereIsNone() throws {
        let plain = try UploadURL("http://[::1]/c/b")
        #expect(plain.host == "::1" && plain.port == 80)
        #expect(plain.requestTarget(addingQuery: "comp=block") == "/c/b?comp=block")
        #expect(plain.hostHeader == "[::1]" && plain.authority == "[::1]:80")
        #expect(try UploadURL("https://h/a%2Fb?x=%2B").requestTarget() == "/a%2Fb?x=%2B")  // kept as given: it is signed
        #expect(try UploadURL("https://h").port == 443)
        #expect(try UploadURL("https://h").namesBlob == false)
    }

    @Test(arguments: [
        "ftp://host/file",  // not http
        "host/file",  // no scheme
        "http:///file",  // no host
        "http://host:99999/file",  // bad port
        "http://host/with space?sig=secret",  // space
        "http://[::1/file",  // unclosed bracket
    ])
    func rejectsUnusableURLsWithoutShowingTheQuery(text: String) {
        do {
            _ = try UploadURL(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(!String(describing: error).contains("secret"))
        }
    }

    @Test(arguments: [
        ("http://127.0.0.1:9000/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab", ObjectStore.s3),
        ("https://bucket.s3.eu-west-1.amazonaws.com/k", .s3),
        ("https://s3.amazonaws.com/b/k?AWSAccessKeyId=AK&Signature=x&Expires=1", .s3),
        ("https://storage.googleapis.com/b/k?X-Goog-Algorithm=GOOG4-RSA-SHA256", .gcs),
        ("http://127.0.0.1:10000/c/b?sv=2021-08-06&sig=abc", .azure),
        ("https://acct.blob.core.windows.net/c/b", .azure),
        ("http://collector.local/upload", .other),
    ])
    func recognisesObjectStores(url: String, store: ObjectStore) throws {
        #expect(try UploadURL(url).store == store)
    }

    @Test func singlePutLimits() {
        #expect(ObjectStore.s3.singlePutLimit == 5 << 30)
        #expect(ObjectStore.azure.singlePutLimit == 5000 << 20)
        #expect(ObjectStore.other.singlePutLimit == nil)
    }

    @Test func s3LimitErrorGivesAdviceAndNoQuery() {
        let error = UploadError.singlePutLimit(path: "/tmp/a.lime", size: (5 << 30) + 1, store: .s3, limit: 5 << 30)
        let text = String(describing: error)
        #expect(text.contains("5 GiB"))
        #expect(text.contains("nothing was sent"))
        #expect(text.contains("--compress"))
    }
}

struct ProxyTests {
    @Test func httpsUsesHTTPSProxyAndHTTPUsesHTTPProxy() throws {
        let environment = ["HTTPS_PROXY": "http://proxy.corp:3128", "http_proxy": "10.0.0.1:8080"]
        let https = try ProxySetting.forDestination(UploadURL("https://acct.blob.core.windows.net/c/b"), environment: environment)
        #expect(https == ProxySetting(host: "proxy.corp", port: 3128))
        let http = try ProxySetting.forDestination(UploadURL("http://127.0.0.1:9/c/b"), environment: environment)
        #expect(http == ProxySetting(host: "10.0.0.1", port: 8080))
        #expect(try ProxySetting.forDestination(UploadURL("https://h/c/b"), environment: [:]) == nil)
    }

    @Test func proxyCredentialsAndDefaultPort() throws {
        let proxy = try ProxySetting.parse("http://us%40er:p%3Ass@proxy.corp")
        #expect(proxy == ProxySetting(host: "proxy.corp", port: 1080, username: "us@er", password: "p:ss"))
        #expect(throws: UploadError.self) { try ProxySetting.parse("socks5://proxy:1080") }
    }

    @Test(arguments: [
        ("acct.blob.core.windows.net", 443, "*", true),
        ("acct.blob.core.windows.net", 443, ".core.windows.net", true),
        ("acct.blob.core.windows.net", 443, "windows.net", true),
        ("acct.blob.core.windows.net", 443, "*.windows.net", true),
        ("127.0.0.1", 9000, "localhost, 127.0.0.1", true),
        ("127.0.0.1", 9000, "127.0.0.1:9001", false),
        ("127.0.0.1", 9000, "127.0.0.1:9000", true),
        ("notwindows.net", 443, "windows.net", false),
        ("host", 443, "", false),
    ])
    func noProxy(host: String, port: Int, noProxy: String, bypassed: Bool) {
        #expect(ProxySetting.bypasses(host: host, port: port, noProxy: noProxy) == bypassed)
    }

    @Test func caBundlePrefersSSLCertFileThenTheSystemsBundle() {
        #expect(CABundle.path(environment: ["SSL_CERT_FILE": "/x.pem"], exists: { _ in false }) == "/x.pem")
        #expect(
            CABundle.path(environment: [:], exists: { $0 == "/etc/pki/tls/certs/ca-bundle.crt" })
                == "/etc/pki/tls/certs/ca-bundle.crt")
        #expect(CABundle.path(environment: [:], exists: { _ in false }) == nil)
    }
}

struct ServerMessageTests {
    @Test func azureAndS3ErrorsGiveCodeAndMessage() {
        let azure = """
            <?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.
            RequestId:1</Message><AuthenticationErrorDetail>sig=secretvalue</AuthenticationErrorDetail></Error>
            """
        #expect(
            HTTPTransport.serverMessage(body: azure, headers: [:], secrets: [])
                == "AuthenticationFailed: Server failed to authenticate the request.")
        let s3 = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"
        #expect(
            HTTPTransport.serverMessage(body: s3, headers: [:], secrets: [])
                == "NoSuchBucket: The specified bucket does not exist")
    }

    @Test func plainBodiesAndHeadersAreUsedWhenThereIsNoXML() {
        #expect(HTTPTransport.serverMessage(body: "  quota exceeded \n", headers: [:], secrets: []) == "quota exceeded")
        #expect(HTTPTransport.serverMessage(body: "", headers: ["x-ms-error-code": "ServerBusy"], secrets: []) == "ServerBusy")
        #expect(HTTPTransport.serverMessage(body: "<Code>A&amp;B</Code>", headers: [:], secrets: []) == "A&B")
    }

    @Test func rejectedErrorsNameTheRequestAndGiveAdvice() throws {
        let label = RequestLabel(
            method: "PUT", url: try UploadURL("https://a.blob.core.windows.net/c/b?sig=secret123456"), purpose: "block 3 of 9")
        let text = String(
            describing: UploadError.rejected(label, status: 403, reason: "Forbidden", serverMessage: "AuthenticationFailed"))
        #expect(
            text.hasPrefix(
                "upload failed: PUT https://a.blob.core.windows.net/c/b (block 3 of 9): HTTP 403 Forbidden: AuthenticationFailed")
        )
        #expect(text.contains("expired"))
        #expect(!text.contains("secret123456"))
    }
}
