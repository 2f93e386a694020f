import CountersignTestSupport
import CountersignConfig
import CountersignVerify
import Foundation
import Testing
@testable import CountersignLedger

/// `ledger verify --file`: an auditor verifies an export years later, with nothing but the file and
/// the trusted keys. Whoever held the file in between may have edited it: each edit is found at the
/// right index, and a damaged or hostile file is refused with the line it failed on, never
/// accepted and never read whole into memory.
@Suite(.serialized) struct ExportFileTests {
    /// An edit of the export's lines (the header is line 0) and what verifying it must give.
    struct Edit: Sendable {
        var name: String
        var apply: @Sendable (inout [String]) throws -> Void
        /// The index the report names; nil when the edit must be refused as a file instead.
        var index: UInt64?
        /// Words the problem or the error must contain.
        var says: String
        /// Whether the file ends with a newline.
        var finalNewline = true
    }

    static let forgedKey = OutsideKey()

    /// The line of entry `n`, or of the checkpoint of size `n`.
    static func line(of kind: String, _ n: UInt64, in lines: [String]) throws -> Int {
        try #require(lines.firstIndex { $0.hasPrefix("\(kind) \(n) ") }, "no \(kind) \(n)")
    }

    /// Replaces field `field` (0-based, the record's name is field 0) of a line.
    static func setField(_ field: Int, of line: inout String, _ change: (String) throws -> String) rethrows {
        var fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        fields[field] = try change(fields[field])
        line = fields.joined(separator: " ")
    }

    static func flipFirstByte(ofBase64 b64: String) throws -> String {
        var bytes = try #require(Data(base64Encoded: b64))
        bytes[bytes.startIndex] ^= 0x01
        return bytes.base64EncodedString()
    }

    static var edits: [Edit] {
        [
            Edit(name: "flip a statement byte", apply: { lines in
                try setField(12, of: &lines[try line(of: "entry", 20, in: lines)], flipFirstByte)
            }, index: 20, says: "leaf hash"),
            Edit(name: "flip a statement byte and write its leaf hash", apply: { lines in
                let at = try line(of: "entry", 20, in: lines)
                try setField(12, of: &lines[at], flipFirstByte)
                let statement = lines[at].split(separator: " ")[12]
                let leaf = Merkle.leafHash(Array(try #require(Data(base64Encoded: String(statement)))))
                setField(11, of: &lines[at]) { _ in Hex.encode(leaf) }
            }, index: 20, says: "signature"),
            Edit(name: "change a leaf hash", apply: { lines in
                setField(11, of: &lines[try line(of: "entry", 33, in: lines)]) { _ in String(repeating: "ab", count: 32) }
            }, index: 33, says: "leaf hash"),
            Edit(name: "delete an entry", apply: { lines in
                lines.remove(at: try line(of: "entry", 30, in: lines))
            }, index: 30, says: "entry 30 is missing"),
            Edit(name: "swap two entries", apply: { lines in
                lines.swapAt(try line(of: "entry", 10, in: lines), try line(of: "entry", 20, in: lines))
            }, index: 10, says: "entry 10 is missing"),
            Edit(name: "swap two entries and renumber them", apply: { lines in
                let (a, b) = (try line(of: "entry", 10, in: lines), try line(of: "entry", 20, in: lines))
                lines.swapAt(a, b)
                setField(1, of: &lines[a]) { _ in "10" }
                setField(1, of: &lines[b]) { _ in "20" }
            }, index: 8, says: "do not match the signed checkpoint of size 16"),
            Edit(name: "repeat an entry", apply: { lines in
                let at = try line(of: "entry", 15, in: lines)
                lines.insert(lines[at], at: at + 1)
            }, index: 16, says: "index 15 appears again"),
            Edit(name: "insert a forged entry at the end", apply: { lines in
                let forged = forgedKey.sign(payloadType: PayloadType.decision, payload: Array("forged approval".utf8))
                var last = lines[try line(of: "entry", 63, in: lines)]
                setField(1, of: &last) { _ in "64" }
                setField(11, of: &last) { _ in Hex.encode(Merkle.leafHash(forged.payload)) }
                setField(12, of: &last) { _ in Data(forged.payload).base64EncodedString() }
                setField(13, of: &last) { _ in Data(forged.signature).base64EncodedString() }
                setField(6, of: &last) { _ in forged.keyID }
                lines.insert(last, at: lines.count - 1)
                setField(1, of: &lines[lines.count - 1]) { _ in "65" }
            }, index: 64, says: "which is not trusted"),
            Edit(name: "replace a checkpoint by one signed with another key", apply: { lines in
                let body = Checkpoint(origin: "test.local/ledger", treeSize: 32, rootHash: Array(repeating: 0xAB, count: 32)).bytes
                let signed = forgedKey.sign(payloadType: PayloadType.checkpoint, payload: body)
                let at = try line(of: "checkpoint", 32, in: lines)
                setField(4, of: &lines[at]) { _ in signed.keyID }
                setField(5, of: &lines[at]) { _ in String(repeating: "ab", count: 32) }
                setField(6, of: &lines[at]) { _ in Data(body).base64EncodedString() }
                setField(7, of: &lines[at]) { _ in Data(signed.signature).base64EncodedString() }
            }, index: 31, says: "checkpoint of size 32 is signed by key"),
            Edit(name: "change a checkpoint's root", apply: { lines in
                setField(5, of: &lines[try line(of: "checkpoint", 32, in: lines)]) { _ in String(repeating: "ab", count: 32) }
            }, index: 31, says: "checkpoint row of size 32 does not match its signed text"),
            Edit(name: "remove the end line", apply: { lines in
                lines.removeLast()
            }, index: 64, says: "no end line"),
            Edit(name: "remove the tail and fix the end line", apply: { lines in
                lines.removeSubrange(try line(of: "entry", 60, in: lines)..<(try line(of: "checkpoint", 64, in: lines)))
                lines[lines.count - 1] = "end 60 8"
            }, index: 60, says: "the tail was removed"),
            Edit(name: "cut the file inside a line", apply: { lines in
                let at = try line(of: "entry", 40, in: lines)
                lines[at] = String(lines[at].prefix(50))
                lines.removeSubrange((at + 1)...)
            }, index: nil, says: "the last line has no newline", finalNewline: false),
            Edit(name: "a line of binary garbage", apply: { lines in
                lines.insert(String(decoding: (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7919) }.filter { $0 != 0x0A }, as: UTF8.self),
                             at: try line(of: "entry", 5, in: lines))
            }, index: nil, says: "unknown record"),
            Edit(name: "bad base64 in a statement", apply: { lines in
                setField(12, of: &lines[try line(of: "entry", 7, in: lines)]) { "!!" + $0 }
            }, index: nil, says: "bad base64"),
            Edit(name: "a line after the end line", apply: { lines in
                lines.append("end 64 8")
            }, index: nil, says: "data after the end line"),
            Edit(name: "not an export", apply: { lines in
                lines[0] = "countersign-ledger-export 2"
            }, index: nil, says: "not a ledger export (line 1)"),
            Edit(name: "an empty file", apply: { lines in
                lines = []
            }, index: nil, says: "empty: not a ledger export"),
        ]
    }

    @Test func everyEditOfAnExportIsFoundAndEveryDamagedFileRefused() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                _ = try await db.fillWithCheckpoints(signer: signer)
                let directory = NSTemporaryDirectory() + "export-edits-\(UUID())"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let original = directory + "/ledger.txt"
                try await db.export(to: original)
                let clean = try LedgerAudit.verifyFile(path: original, trustedKeys: signer.trusted, origin: "test.local/ledger")
                #expect(clean.problem == nil && clean.entries == 64 && clean.checkpoints == 8)

                let text = try String(contentsOfFile: original, encoding: .utf8)
                #expect(text.hasSuffix("\nend 64 8\n"))
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
                for edit in Self.edits {
                    var edited = lines
                    try edit.apply(&edited)
                    let path = directory + "/edited.txt"
                    let content = edited.map { $0 + "\n" }.joined()
                    try Data((edit.finalNewline ? content : String(content.dropLast())).utf8).write(to: URL(fileURLWithPath: path))
                    do {
                        let report = try LedgerAudit.verifyFile(path: path, trustedKeys: signer.trusted, origin: "test.local/ledger")
                        let problem = try #require(report.problem, "\(edit.name): not detected")
                        #expect(edit.index != nil, "\(edit.name): reported at \(problem.index) instead of refused as a file: \(problem.message)")
                        #expect(problem.index == edit.index, "\(edit.name): \(problem)")
                        #expect(problem.message.contains(edit.says), "\(edit.name): \(problem.message)")
                    } catch let error as LedgerError {
                        #expect(edit.index == nil, "\(edit.name): refused as a file, not reported at an index: \(error.message)")
                        #expect(error.message.contains(edit.says), "\(edit.name): \(error.message)")
                        #expect(error.message.count < 400, "\(edit.name): an error message of \(error.message.count) characters")
                    }
                }
            }
        }
    }

    /// An export cut back with its checkpoints is a shorter ledger that verifies on its own; a
    /// checkpoint kept from before (as `ledger checkpoint` prints it) shows the cut, and one that a
    /// trusted key did not sign, or that is not a checkpoint at all, is refused.
    @Test func aKeptCheckpointFindsATailCutBackWithItsCheckpoints() async throws {
        try await TokenTestSigner.with { signer in
            try await TestDatabase.withFresh { db in
                let newest = try await db.fillWithCheckpoints(signer: signer)
                let kept = try StoredCheckpoint(printed: newest.printed)
                #expect(try StoredCheckpoint(printed: newest.printed.replacingOccurrences(of: "\n", with: "\r\n")) == kept)
                #expect(kept.body == newest.body && kept.signature == newest.signature && kept.keyID == newest.keyID
                        && kept.payloadType == newest.payloadType && kept.treeSize == 64 && kept.rootHash == newest.rootHash)

                let path = NSTemporaryDirectory() + "export-cut-\(UUID()).txt"
                defer { try? FileManager.default.removeItem(atPath: path) }
                try await db.export(to: path)
                var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
                lines.removeSubrange(try Self.line(of: "entry", 60, in: lines)..<(lines.count - 1))  // entries 60–63 and the checkpoint of 64
                lines[lines.count - 1] = "end 60 7"
                try Data(lines.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: path))

                let alone = try LedgerAudit.verifyFile(path: path, trustedKeys: signer.trusted, origin: "test.local/ledger")
                #expect(alone.problem == nil && alone.entries == 60, "the cut file is a consistent shorter ledger")
                let against = try LedgerAudit.verifyFile(path: path, trustedKeys: signer.trusted, origin: "test.local/ledger", given: [kept])
                #expect(against.problem?.index == 60)
                #expect(against.problem?.message.contains("says the ledger had 64 entries; only 60 are there") == true, "\(String(describing: against.problem))")

                let forged = Self.forgedKey.sign(payloadType: PayloadType.checkpoint, payload: newest.body)
                let stranger = StoredCheckpoint(body: newest.body, treeSize: 64, rootHash: newest.rootHash, payloadType: forged.payloadType,
                                                signature: forged.signature, keyID: forged.keyID, epoch: 0)
                let untrusted = try await LedgerAudit.verifyDatabase(database: db.settings, trustedKeys: signer.trusted, origin: "test.local/ledger",
                                                                     given: [try StoredCheckpoint(printed: stranger.printed)], logger: TestEnvironment.logger)
                #expect(untrusted.problem?.index == 63)
                #expect(untrusted.problem?.message.contains("is signed by key \(forged.keyID), which is not trusted") == true, "\(String(describing: untrusted.problem))")

                for garbage in ["", "countersign.dev.local/ledger\n64\n", newest.printed.replacingOccurrences(of: "signature ", with: "sig "),
                                newest.printed.replacingOccurrences(of: "\n64\n", with: "\nsixty-four\n")] {
                    let error = #expect(throws: LedgerError.self) { _ = try StoredCheckpoint(printed: garbage) }
                    #expect(error?.message.hasPrefix("not a printed checkpoint") == true, "\(error?.message ?? "")")
                }
            }
        }
    }

    /// A file with no newline is refused once a line passes the bound, not read whole, and quickly:
    /// each byte is searched for a newline once, however long the line.
    @Test func aFileWithoutNewlinesIsRefusedAtTheLineBound() throws {
        let path = NSTemporaryDirectory() + "export-no-newline-\(UUID()).txt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var content = Data((LedgerExportFormat.header + "\n").utf8)
        content.append(Data(repeating: UInt8(ascii: "A"), count: 24 << 20))
        try content.write(to: URL(fileURLWithPath: path))
        let started = ContinuousClock.now
        let error = #expect(throws: LedgerError.self) {
            _ = try LedgerAudit.verifyFile(path: path, trustedKeys: TrustedKeys([]), origin: nil, maxLineBytes: 6 << 20)
        }
        #expect(error?.message.contains(":2: a line longer than 6291456 bytes") == true, "\(error?.message ?? "")")
        #expect(ContinuousClock.now - started < .seconds(10))
        // Under the bound, the same long line is only refused for what it is.
        let whole = #expect(throws: LedgerError.self) {
            _ = try LedgerAudit.verifyFile(path: path, trustedKeys: TrustedKeys([]), origin: nil)
        }
        #expect(whole?.message.contains("the last line has no newline") == true, "\(whole?.message ?? "")")
    }
}
