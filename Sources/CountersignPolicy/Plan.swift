/// The format of a plan given to the engine, as named in the wire contract (`plan_format`).
public enum PlanFormat: String, Sendable, Hashable, CaseIterable {
    /// `terraform show -json` output, format_version ≥ 0.1 and < 2.0.
    case terraformJSON = "terraform-json"
    /// The change-set JSON of orchestration plans (`action`, `resources`, `resources_to_delete`,
    /// `additional_actions`, `segment_name`, `estimated_monthly_cost`, `cost_increase`, …).
    case changesetJSON = "changeset-json"

    /// Parses a wire `plan_format` string.
    /// - Throws: `PolicyError` with code `.unknownPlanFormat` for anything else.
    public init(wireName: String) throws {
        guard let f = PlanFormat(rawValue: wireName) else {
            throw PolicyError(code: .unknownPlanFormat,
                              message: "unknown plan format; expected terraform-json or changeset-json")
        }
        self = f
    }
}

/// Limits on untrusted input. Everything beyond them is refused with a clear error.
public struct PlanLimits: Sendable, Hashable {
    /// Largest plan accepted, in bytes. Default 16 MiB (four times the wire's default frame limit).
    public var maxPlanBytes: Int
    /// Deepest JSON nesting accepted. Default 128 (real plans stay well under 40).
    public var maxDepth: Int
    /// Most resource changes in one plan. Default 100,000.
    public var maxResourceChanges: Int
    /// Largest Infracost document accepted, in bytes. Default 16 MiB.
    public var maxInfracostBytes: Int

    /// The defaults stated on each property.
    public static let defaults = PlanLimits(maxPlanBytes: 16 << 20, maxDepth: 128,
                                            maxResourceChanges: 100_000, maxInfracostBytes: 16 << 20)

    public init(maxPlanBytes: Int, maxDepth: Int, maxResourceChanges: Int, maxInfracostBytes: Int) {
        self.maxPlanBytes = maxPlanBytes
        self.maxDepth = maxDepth
        self.maxResourceChanges = maxResourceChanges
        self.maxInfracostBytes = maxInfracostBytes
    }
}

/// One action on a resource, as Terraform names them.
public enum ResourceAction: String, Sendable, Hashable, Comparable {
    case noOp = "no-op"
    case create
    case read
    case update
    case delete
    case forget

    private var order: Int {
        switch self {
        case .noOp: 0
        case .read: 1
        case .create: 2
        case .update: 3
        case .forget: 4
        case .delete: 5
        }
    }
    public static func < (a: ResourceAction, b: ResourceAction) -> Bool { a.order < b.order }
}

/// A step in an attribute path, such as `ingress[0].cidr_blocks`.
enum PathStep: Hashable, Sendable {
    case key(String)
    case index(Int)
}

func renderPath(_ path: [PathStep]) -> String {
    var s = ""
    for step in path {
        switch step {
        case .key(let k):
            if !s.isEmpty { s += "." }
            s += k
        case .index(let i):
            s += "[\(i)]"
        }
    }
    return s
}

/// What the plan says about one attribute after the change.
enum AttributeState: Hashable {
    /// The plan shows this value (possibly `null`).
    case known(JSONValue)
    /// The value is computed at apply time (`after_unknown`): neither true nor false.
    case unknown
    /// The attribute is not in the plan at all.
    case absent
}

/// One resource change, normalised from any input format.
public struct ResourceChange: Sendable, Hashable {
    // The fields live in one copy-on-write box: evaluation passes changes around by value, and a
    // copy is then one retain instead of one per field (it was a quarter of the time of a large plan).
    final class Storage: @unchecked Sendable {
        var address: String
        var module: String?
        var type: String
        var name: String
        var index: String?
        var deposed: String?
        var mode: String
        var provider: String
        var actions: [ResourceAction]
        var region: String?
        var tags: [String: String]
        var carriesTags: Bool
        var isAdditionalAction: Bool
        var count: Int
        var contextNames: [String]
        let values: Values

        init(address: String, module: String?, type: String, name: String, index: String?, deposed: String?, mode: String, provider: String, actions: [ResourceAction], region: String?, tags: [String: String], carriesTags: Bool, isAdditionalAction: Bool, count: Int, contextNames: [String], values: Values) {
            self.address = address
            self.module = module
            self.type = type
            self.name = name
            self.index = index
            self.deposed = deposed
            self.mode = mode
            self.provider = provider
            self.actions = actions
            self.region = region
            self.tags = tags
            self.carriesTags = carriesTags
            self.isAdditionalAction = isAdditionalAction
            self.count = count
            self.contextNames = contextNames
            self.values = values
        }

        func copy() -> Storage {
            Storage(address: address, module: module, type: type, name: name, index: index, deposed: deposed, mode: mode, provider: provider, actions: actions, region: region, tags: tags, carriesTags: carriesTags, isAdditionalAction: isAdditionalAction, count: count, contextNames: contextNames, values: values)
        }
    }

    private var storage: Storage

    private mutating func mutableStorage() -> Storage {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        return storage
    }

    public static func == (a: ResourceChange, b: ResourceChange) -> Bool {
        if a.storage === b.storage { return true }
        let x = a.storage, y = b.storage
        return x.address == y.address && x.module == y.module && x.type == y.type && x.name == y.name
            && x.index == y.index && x.deposed == y.deposed && x.mode == y.mode && x.provider == y.provider
            && x.actions == y.actions && x.region == y.region && x.tags == y.tags && x.carriesTags == y.carriesTags
            && x.isAdditionalAction == y.isAdditionalAction && x.count == y.count && x.contextNames == y.contextNames
            && x.values == y.values
    }

    public func hash(into h: inout Hasher) {
        h.combine(storage.address)
        h.combine(storage.actions)
        h.combine(storage.values)
    }

    /// Full address, such as `module.net.aws_security_group.web[0]`, or a change-set name.
    public var address: String {
        get { storage.address }
        set { mutableStorage().address = newValue }
    }
    /// Module address (`module.net`), or nil for the root module.
    public var module: String? {
        get { storage.module }
        set { mutableStorage().module = newValue }
    }
    /// Resource type, such as `aws_db_instance` (change sets: a type guessed from the key).
    public var type: String {
        get { storage.type }
        set { mutableStorage().type = newValue }
    }
    /// Resource name within its module.
    public var name: String {
        get { storage.name }
        set { mutableStorage().name = newValue }
    }
    /// The instance key (`0`, `"eu"`), rendered as text, if any.
    public var index: String? {
        get { storage.index }
        set { mutableStorage().index = newValue }
    }
    /// The deposed object key, if this change is to a deposed object.
    public var deposed: String? {
        get { storage.deposed }
        set { mutableStorage().deposed = newValue }
    }
    /// `managed` (data-source reads are dropped while normalising).
    public var mode: String {
        get { storage.mode }
        set { mutableStorage().mode = newValue }
    }
    /// Provider name, such as `registry.terraform.io/hashicorp/aws`.
    public var provider: String {
        get { storage.provider }
        set { mutableStorage().provider = newValue }
    }
    /// The actions, in plan order (`["delete","create"]` is a replace).
    public var actions: [ResourceAction] {
        get { storage.actions }
        set { mutableStorage().actions = newValue }
    }
    /// The region the resource lives in, when the plan shows it.
    public var region: String? {
        get { storage.region }
        set { mutableStorage().region = newValue }
    }
    /// Tags after the change (before the change for deletions), including provider default tags
    /// when the plan shows them.
    public var tags: [String: String] {
        get { storage.tags }
        set { mutableStorage().tags = newValue }
    }
    /// True when the resource has a `tags` attribute at all (it "carries tags").
    public var carriesTags: Bool {
        get { storage.carriesTags }
        set { mutableStorage().carriesTags = newValue }
    }
    /// Change sets only: this change came from `additional_actions`, outside the main action.
    public var isAdditionalAction: Bool {
        get { storage.isAdditionalAction }
        set { mutableStorage().isAdditionalAction = newValue }
    }
    /// Change sets only: how many of this resource are created (`g5.xlarge x4` → 4).
    public var count: Int {
        get { storage.count }
        set { mutableStorage().count = newValue }
    }
    /// Other names that describe the resource (segment names, identifiers) for classification.
    var contextNames: [String] {
        get { storage.contextNames }
        set { mutableStorage().contextNames = newValue }
    }
    /// Attribute paths whose value after the change is unknown until apply (sorted).
    public var unknownPaths: [String] { TerraformPlanReader.markedPaths(afterUnknown) }
    /// Attribute paths marked sensitive before or after the change (sorted).
    public var sensitivePaths: [String] {
        Array(Set(TerraformPlanReader.markedPaths(beforeSensitive) + TerraformPlanReader.markedPaths(afterSensitive))).sorted()
    }
    /// The raw values, boxed so that copying a change is cheap.
    var values: Values { storage.values }
    var before: JSONValue? { values.before }
    var after: JSONValue? { values.after }
    var afterUnknown: JSONValue? { values.afterUnknown }
    var beforeSensitive: JSONValue? { values.beforeSensitive }
    var afterSensitive: JSONValue? { values.afterSensitive }

    final class Values: Sendable, Hashable {
        let before, after, afterUnknown, beforeSensitive, afterSensitive: JSONValue?
        init(_ before: JSONValue?, _ after: JSONValue?, _ afterUnknown: JSONValue?, _ beforeSensitive: JSONValue?,
             _ afterSensitive: JSONValue?) {
            self.before = before
            self.after = after
            self.afterUnknown = afterUnknown
            self.beforeSensitive = beforeSensitive
            self.afterSensitive = afterSensitive
        }
        static func == (a: Values, b: Values) -> Bool {
            a === b || (a.before == b.before && a.after == b.after && a.afterUnknown == b.afterUnknown
                && a.beforeSensitive == b.beforeSensitive && a.afterSensitive == b.afterSensitive)
        }
        func hash(into h: inout Hasher) {
            h.combine(before)
            h.combine(after)
        }
    }

    init(address: String, module: String?, type: String, name: String, index: String?, deposed: String?,
         mode: String, provider: String, actions: [ResourceAction], region: String?, tags: [String: String],
         carriesTags: Bool, isAdditionalAction: Bool, count: Int, before: JSONValue?, after: JSONValue?,
         afterUnknown: JSONValue?, beforeSensitive: JSONValue?, afterSensitive: JSONValue?, contextNames: [String]) {
        storage = Storage(address: address, module: module, type: type, name: name, index: index, deposed: deposed,
                          mode: mode, provider: provider, actions: actions, region: region, tags: tags,
                          carriesTags: carriesTags, isAdditionalAction: isAdditionalAction, count: count,
                          contextNames: contextNames,
                          values: Values(before, after, afterUnknown, beforeSensitive, afterSensitive))
    }


    /// True for a replace (both delete and create).
    public var isReplace: Bool { actions.contains(.delete) && actions.contains(.create) }
    /// True when the object is destroyed (a delete or a replace).
    public var isDestructive: Bool { actions.contains(.delete) }
    /// True when something actually changes (not no-op, not read).
    public var isChange: Bool { actions.contains { $0 != .noOp && $0 != .read } }
    /// True when the resource exists after the change with new values (create, update, replace).
    public var hasAfter: Bool { actions.contains(.create) || actions.contains(.update) }

    /// `tags[key]`. A small dictionary (nearly every resource's) is searched by comparing keys,
    /// which is cheaper than hashing: `==` is the equality its lookup uses, and its keys are
    /// distinct under it, so both find the same one.
    func tag(_ key: String) -> String? {
        let tags = storage.tags
        guard tags.count <= 8 else { return tags[key] }
        for (k, v) in tags where k == key { return v }
        return nil
    }

    /// The state of an attribute after the change. `after_unknown` is consulted first: an
    /// attribute under an unknown marker is `.unknown`, never read as false.
    func attribute(_ path: [PathStep]) -> AttributeState {
        if ResourceChange.isMarked(afterUnknown, path) { return .unknown }
        guard var v = after else { return .absent }
        for step in path {
            switch step {
            case .key(let k):
                guard case .object(let o) = v else { return .absent }
                guard let next = o[k] else { return .absent }
                v = next
            case .index(let i):
                guard case .array(let a) = v, i >= 0, i < a.count else { return .absent }
                v = a[i]
            }
        }
        return .known(v)
    }

    /// `attribute([.key(key)])`, without making the path.
    func attribute(_ key: String) -> AttributeState {
        if let marker = afterUnknown {
            if case .bool(true) = marker { return .unknown }
            if case .object(let o) = marker, case .bool(true)? = o[key] { return .unknown }
        }
        guard case .object(let o)? = after, let v = o[key] else { return .absent }
        return .known(v)
    }

    /// A known string attribute after the change.
    func string(_ key: String) -> String? {
        if case .known(.string(let s)) = attribute(key) { return s }
        return nil
    }

    /// True when `marker` (an `after_unknown` or `*_sensitive` structure) marks `path` or a prefix.
    static func isMarked(_ marker: JSONValue?, _ path: [PathStep]) -> Bool {
        guard var m = marker else { return false }
        if case .bool(true) = m { return true }
        for step in path {
            switch step {
            case .key(let k):
                guard case .object(let o) = m, let next = o[k] else { return false }
                m = next
            case .index(let i):
                guard case .array(let a) = m, i >= 0, i < a.count else { return false }
                m = a[i]
            }
            if case .bool(true) = m { return true }
        }
        return false
    }

    /// True when the value at `path` is marked sensitive before or after the change.
    func isSensitive(_ path: [PathStep]) -> Bool {
        ResourceChange.isMarked(afterSensitive, path) || ResourceChange.isMarked(beforeSensitive, path)
    }
}

/// A plan normalised into one list of resource changes.
public struct Plan: Sendable, Hashable {
    /// The input format.
    public var format: PlanFormat
    /// Terraform's `format_version` (change sets: nil).
    public var formatVersion: String?
    /// Managed-resource changes in plan order (data-source reads dropped).
    public var changes: [ResourceChange]
    /// Monthly cost increase in USD the plan states (change sets: `cost_increase`, or
    /// `estimated_monthly_cost` for a plan that only creates, or minus `estimated_cost_savings`),
    /// or nil when the plan does not say.
    public var costIncreaseMonthly: Double?
    /// Change sets only: the main action (`create_microsegment`).
    public var primaryAction: String?

    /// Parses and normalises a plan.
    /// - Parameters:
    ///   - bytes: the plan exactly as received.
    ///   - format: the plan's format.
    ///   - limits: size and depth limits (default `PlanLimits.defaults`).
    /// - Throws: `PolicyError` (`.tooLarge`, `.invalidJSON`, `.invalidPlan`,
    ///   `.unsupportedFormatVersion`), whose message names the offending field but never quotes
    ///   plan content.
    public static func parse(_ bytes: [UInt8], format: PlanFormat, limits: PlanLimits = .defaults) throws -> Plan {
        guard bytes.count <= limits.maxPlanBytes else {
            throw PolicyError.tooLarge("the plan is \(bytes.count) bytes; the limit is \(limits.maxPlanBytes) bytes")
        }
        let root = try JSONReader.parse(bytes, maxDepth: limits.maxDepth)
        switch format {
        case .terraformJSON: return try TerraformPlanReader.read(root, limits: limits)
        case .changesetJSON: return try ChangesetReader.read(root, limits: limits)
        }
    }
}

/// Reads an Infracost `breakdown --format json` document.
public enum Infracost {
    /// The document's `diffTotalMonthlyCost` in USD, or nil when it is null or missing.
    /// - Throws: `PolicyError` with code `.invalidInfracost` (or `.invalidJSON`, `.tooLarge`).
    public static func monthlyCostIncrease(_ bytes: [UInt8], limits: PlanLimits = .defaults) throws -> Double? {
        guard bytes.count <= limits.maxInfracostBytes else {
            throw PolicyError.tooLarge("the Infracost document is \(bytes.count) bytes; the limit is \(limits.maxInfracostBytes) bytes")
        }
        let root = try JSONReader.parse(bytes, maxDepth: limits.maxDepth, what: "Infracost document")
        guard case .object(let o) = root else {
            throw PolicyError.invalidInfracost("the Infracost document must be a JSON object, found \(root.typeName)")
        }
        switch o["diffTotalMonthlyCost"] {
        case nil, .null?: return nil
        case .string(let s)?:
            guard let d = Double(s), d.isFinite else {
                throw PolicyError.invalidInfracost("diffTotalMonthlyCost is not a decimal number")
            }
            return d
        case .int(let i)?: return Double(i)
        case .double(let d)?: return d
        case let other?:
            throw PolicyError.invalidInfracost("diffTotalMonthlyCost must be a string or a number, found \(other.typeName)")
        }
    }
}

// MARK: - Terraform

enum TerraformPlanReader {
    static func read(_ root: JSONValue, limits: PlanLimits) throws -> Plan {
        guard case .object(let top) = root else {
            throw PolicyError.invalidPlan("a Terraform plan must be a JSON object, found \(root.typeName)")
        }
        guard let fv = top["format_version"] else {
            throw PolicyError.invalidPlan("format_version is missing: is this `terraform show -json` output?")
        }
        guard case .string(let version) = fv else {
            throw PolicyError.invalidPlan("format_version must be a string, found \(fv.typeName)")
        }
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 1, parts.count <= 3, let major = Int(parts[0]),
              let minor = parts.count > 1 ? Int(parts[1]) : 0 else {
            throw PolicyError.invalidPlan("format_version is not of the form MAJOR.MINOR")
        }
        if major >= 2 {
            throw PolicyError.unsupportedFormatVersion(
                "plan format_version \(major).\(minor) is not supported: this engine reads format 0.1 up to (not including) 2.0")
        }
        if major == 0 && minor < 1 {
            throw PolicyError.unsupportedFormatVersion("plan format_version \(major).\(minor) is older than 0.1")
        }

        let regions = providerRegions(top)
        var changes: [ResourceChange] = []
        switch top["resource_changes"] {
        case nil, .null?:
            break
        case .array(let items)?:
            guard items.count <= limits.maxResourceChanges else {
                throw PolicyError.tooLarge("the plan has \(items.count) resource changes; the limit is \(limits.maxResourceChanges)")
            }
            changes.reserveCapacity(items.count)
            var providerRegion = ProviderRegionMemo(regions: regions)
            for (i, item) in items.enumerated() {
                if let c = try readChange(item, at: i, providerRegion: &providerRegion) {
                    changes.append(c)
                }
            }
        case let other?:
            throw PolicyError.invalidPlan("resource_changes must be an array, found \(other.typeName)")
        }
        return Plan(format: .terraformJSON, formatVersion: version, changes: changes,
                    costIncreaseMonthly: nil, primaryAction: nil)
    }

    /// Region per provider configuration key (`aws`, `aws.eu`, `module.x:aws`).
    static func providerRegions(_ top: JSONObject) -> [String: String] {
        var out: [String: String] = [:]
        guard let pcs = top["configuration"]?["provider_config"]?.object else { return out }
        let variables = top["variables"]?.object ?? [:]
        for (key, pc) in pcs {
            guard let region = pc["expressions"]?["region"] else { continue }
            if let s = region["constant_value"]?.string {
                out[key] = s
            } else if let refs = region["references"]?.array {
                for r in refs {
                    if let ref = r.string, ref.hasPrefix("var.") {
                        let name = String(ref.dropFirst(4))
                        if let s = variables[name]?["value"]?.string { out[key] = s; break }
                    }
                }
            }
        }
        return out
    }

    /// The region of a change's provider configuration, remembered for the provider and module
    /// of the last change: the changes of a plan mostly share both.
    struct ProviderRegionMemo {
        let regions: [String: String]
        private var last: (provider: String, module: String?, region: String?)?

        init(regions: [String: String]) { self.regions = regions }

        /// The region of the provider configuration `provider` has in `module` (nil: none known).
        mutating func region(provider: String, module: String?) -> String? {
            if regions.isEmpty { return nil }
            // Compared byte by byte: the same bytes always give the same answer.
            if let last, Self.sameBytes(last.provider, provider), Self.sameBytes(last.module, module) {
                return last.region
            }
            let short = providerShortName(provider)
            var region: String?
            if let module, let r = regions["\(moduleKey(module)):\(short)"] {
                region = r
            } else if let r = regions[short] {
                region = r
            }
            last = (provider, module, region)
            return region
        }

        private static func sameBytes(_ a: String?, _ b: String?) -> Bool {
            switch (a, b) {
            case (nil, nil): true
            case let (a?, b?): a.utf8.elementsEqual(b.utf8)
            default: false
            }
        }
    }

    static func readChange(_ item: JSONValue, at position: Int, providerRegion: inout ProviderRegionMemo) throws -> ResourceChange? {
        // Only an error names the change: no text is made for the changes that are well formed.
        var where_: String { "resource_changes[\(position)]" }
        guard case .object(let rc) = item else {
            throw PolicyError.invalidPlan("\(where_) must be an object, found \(item.typeName)")
        }
        func str(_ key: String, required: Bool) throws -> String? {
            switch rc[key] {
            case nil, .null?:
                if required { throw PolicyError.invalidPlan("\(where_).\(key) is missing") }
                return nil
            case .string(let s)?: return s
            case let other?: throw PolicyError.invalidPlan("\(where_).\(key) must be a string, found \(other.typeName)")
            }
        }
        let mode = try str("mode", required: false) ?? "managed"
        if mode == "data" { return nil }
        guard mode == "managed" else {
            throw PolicyError.invalidPlan("\(where_).mode must be \"managed\" or \"data\"")
        }
        let address = try str("address", required: true)!
        let type = try str("type", required: true)!
        let name = try str("name", required: true)!
        let module = try str("module_address", required: false)
        let provider = try str("provider_name", required: false) ?? ""
        let deposed = try str("deposed", required: false)
        var index: String?
        switch rc["index"] {
        case nil, .null?: index = nil
        case .int(let i)?: index = String(i)
        case .string(let s)?: index = s
        case let other?: throw PolicyError.invalidPlan("\(where_).index must be a number or a string, found \(other.typeName)")
        }
        guard let changeValue = rc["change"] else { throw PolicyError.invalidPlan("\(where_).change is missing") }
        guard case .object(let change) = changeValue else {
            throw PolicyError.invalidPlan("\(where_).change must be an object, found \(changeValue.typeName)")
        }
        guard case .array(let rawActions)? = change["actions"] else {
            throw PolicyError.invalidPlan("\(where_).change.actions must be an array of strings")
        }
        var actions: [ResourceAction] = []
        for (j, a) in rawActions.enumerated() {
            guard case .string(let s) = a else {
                throw PolicyError.invalidPlan("\(where_).change.actions[\(j)] must be a string, found \(a.typeName)")
            }
            guard let action = ResourceAction(rawValue: s) else {
                throw PolicyError.invalidPlan("\(where_).change.actions[\(j)] is not an action this engine knows (create, read, update, delete, no-op, forget)")
            }
            actions.append(action)
        }
        guard !actions.isEmpty else { throw PolicyError.invalidPlan("\(where_).change.actions is empty") }

        func value(_ key: String, objectOrNull: Bool) throws -> JSONValue? {
            guard let v = change[key] else { return nil }
            if case .null = v { return nil }
            if objectOrNull, case .object = v { return v }
            if objectOrNull { throw PolicyError.invalidPlan("\(where_).change.\(key) must be an object or null, found \(v.typeName)") }
            return v
        }
        let before = try value("before", objectOrNull: false)
        let after = try value("after", objectOrNull: false)
        let afterUnknown = try markerValue(change["after_unknown"], "\(where_).change.after_unknown")
        let beforeSensitive = try markerValue(change["before_sensitive"], "\(where_).change.before_sensitive")
        let afterSensitive = try markerValue(change["after_sensitive"], "\(where_).change.after_sensitive")

        // Tags: after the change, or before it for a deletion.
        let tagSource = (after ?? before)
        var tags: [String: String] = [:]
        var carriesTags = false
        var contextNames: [String] = []
        if let tagObj = tagSource?.object {
            let tagsAllValue = tagObj["tags_all"]
            let ownTagsValue = tagObj["tags"]
            if ownTagsValue != nil || tagsAllValue != nil { carriesTags = true }
            // tags_all first, so that the resource's own tags win.
            let tagsAll = tagsAllValue?.object
            let ownTags = ownTagsValue?.object
            let count = (tagsAll?.count ?? 0) + (ownTags?.count ?? 0)
            if count > 0 {
                tags.reserveCapacity(count)
                for (k, v) in tagsAll ?? JSONObject() { if case .string(let s) = v { tags[k] = s } }
                for (k, v) in ownTags ?? JSONObject() { if case .string(let s) = v { tags[k] = s } }
            }
            // Identifiers that name the resource.
            for key in ["name", "identifier", "bucket", "cluster_identifier", "function_name"] {
                if case .string(let s)? = tagObj[key] { contextNames.append(s) }
            }
        }
        if !carriesTags, let u = afterUnknown?.object, u["tags"] != nil || u["tags_all"] != nil {
            carriesTags = true
        }
        // Region: the resource's own `region`, its availability zone, else its provider's.
        var region: String?
        if let r = tagSource?["region"]?.string, !r.isEmpty {
            region = r
        } else if let az = tagSource?["availability_zone"]?.string, let r = regionOfZone(az) {
            region = r
        } else {
            region = providerRegion.region(provider: provider, module: module)
        }
        return ResourceChange(
            address: address, module: module, type: type, name: name, index: index, deposed: deposed,
            mode: mode, provider: provider, actions: actions,
            region: region, tags: tags, carriesTags: carriesTags, isAdditionalAction: false, count: 1,
            before: before, after: after, afterUnknown: afterUnknown,
            beforeSensitive: beforeSensitive, afterSensitive: afterSensitive, contextNames: contextNames)
    }

    /// The last non-empty `/`-separated part of a provider name (`registry.terraform.io/hashicorp/aws`
    /// → `aws`), or the whole name when it has none.
    static func providerShortName(_ provider: String) -> String {
        // Printable ASCII: a character is a byte.
        if let ascii = provider.utf8.withContiguousStorageIfAvailable({ u -> String? in
            guard u.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
            var end = u.count
            while end > 0, u[end - 1] == UInt8(ascii: "/") { end -= 1 }
            guard end > 0 else { return provider }
            var start = end
            while start > 0, u[start - 1] != UInt8(ascii: "/") { start -= 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: u[start..<end]), as: UTF8.self)
        }), let short = ascii {
            return short
        }
        return providerShortNameReference(provider)
    }

    /// The definition of ``providerShortName(_:)``, on characters.
    static func providerShortNameReference(_ provider: String) -> String {
        provider.split(separator: "/").last.map(String.init) ?? provider
    }

    /// A module address as provider configuration keys name it: every `module.` removed
    /// (`module.net.module.vpc` → `net.vpc`).
    static func moduleKey(_ module: String) -> String {
        // Printable ASCII: a character is a byte, and the search is a search of bytes.
        if let ascii = module.utf8.withContiguousStorageIfAvailable({ u -> String? in
            guard u.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
            let pattern = Array("module.".utf8)
            var out: [UInt8] = []
            out.reserveCapacity(u.count)
            var i = 0
            while i < u.count {
                if i + pattern.count <= u.count, u[i] == pattern[0],
                   (1..<pattern.count).allSatisfy({ u[i + $0] == pattern[$0] }) {
                    i += pattern.count
                } else {
                    out.append(u[i])
                    i += 1
                }
            }
            return String(decoding: out, as: UTF8.self)
        }), let key = ascii {
            return key
        }
        return moduleKeyReference(module)
    }

    /// The definition of ``moduleKey(_:)``.
    static func moduleKeyReference(_ module: String) -> String {
        module.replacingOccurrences(of: "module.", with: "")
    }

    static func markerValue(_ v: JSONValue?, _ where_: @autoclosure () -> String) throws -> JSONValue? {
        switch v {
        case nil, .null?: return nil
        case .bool?, .object?, .array?: return v
        case let other?: throw PolicyError.invalidPlan("\(where_()) must be an object, an array or a boolean, found \(other.typeName)")
        }
    }

    /// "us-west-2a" → "us-west-2".
    static func regionOfZone(_ az: String) -> String? {
        // Printable ASCII: a character is a byte, a letter A-Z or a-z, a number 0-9.
        if let ascii = az.utf8.withContiguousStorageIfAvailable({ u -> String?? in
            guard u.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
            var end = u.count
            while end > 0, (u[end - 1] | 0x20) >= 0x61 && (u[end - 1] | 0x20) <= 0x7A { end -= 1 }
            guard end > 0, u[end - 1] >= 0x30 && u[end - 1] <= 0x39, end >= 4 else { return .some(nil) }
            return .some(String(decoding: UnsafeBufferPointer(rebasing: u[..<end]), as: UTF8.self))
        }), let result = ascii {
            return result
        }
        return regionOfZoneReference(az)
    }

    /// The definition of ``regionOfZone(_:)``, on characters.
    static func regionOfZoneReference(_ az: String) -> String? {
        var s = Substring(az)
        while let last = s.last, last.isLetter { s = s.dropLast() }
        guard let last = s.last, last.isNumber, s.count >= 4 else { return nil }
        return String(s)
    }

    /// Paths marked `true` in an after_unknown / *_sensitive structure (bounded: at most 1,000).
    static func markedPaths(_ marker: JSONValue?) -> [String] {
        guard let marker else { return [] }
        var out: [String] = []
        var stack: [(JSONValue, [PathStep])] = [(marker, [])]
        while let (v, path) = stack.popLast(), out.count < 1000 {
            switch v {
            case .bool(true): out.append(path.isEmpty ? "*" : renderPath(path))
            case .object(let o):
                for (k, child) in o { stack.append((child, path + [.key(k)])) }
            case .array(let a):
                for (i, child) in a.enumerated() { stack.append((child, path + [.index(i)])) }
            default: break
            }
        }
        return out.sorted()
    }
}

// MARK: - Change sets

enum ChangesetReader {
    static let costKeys: Set<String> = ["estimated_monthly_cost", "cost_increase", "estimated_cost_savings",
                                        "monthly_cost", "estimated_monthly_cost_increase"]

    static func read(_ root: JSONValue, limits: PlanLimits) throws -> Plan {
        guard case .object(let top) = root else {
            throw PolicyError.invalidPlan("a change set must be a JSON object, found \(root.typeName)")
        }
        guard let actionValue = top["action"] else { throw PolicyError.invalidPlan("action is missing") }
        guard case .string(let action) = actionValue, !action.isEmpty else {
            throw PolicyError.invalidPlan("action must be a non-empty string, found \(actionValue.typeName)")
        }
        let primary = primaryActions(action)
        var segment: String?
        switch top["segment_name"] {
        case nil, .null?: break
        case .string(let s)?: segment = s
        case let other?: throw PolicyError.invalidPlan("segment_name must be a string, found \(other.typeName)")
        }

        var changes: [ResourceChange] = []
        func make(address: String, type: String, name: String, actions: [ResourceAction],
                  before: JSONValue?, after: JSONValue?, context: [String], additional: Bool = false,
                  count: Int = 1) -> ResourceChange {
            var tags: [String: String] = [:]
            var carries = false
            if let t = after?["tags"]?.object ?? before?["tags"]?.object {
                carries = true
                for (k, v) in t { if let s = v.string { tags[k] = s } }
            }
            return ResourceChange(
                address: address, module: nil, type: type, name: name, index: nil, deposed: nil,
                mode: "managed", provider: "changeset", actions: actions,
                region: after?["region"]?.string ?? before?["region"]?.string, tags: tags, carriesTags: carries,
                isAdditionalAction: additional, count: count,
                before: before, after: after, afterUnknown: nil, beforeSensitive: nil, afterSensitive: nil,
                contextNames: context)
        }
        let context = [action] + (segment.map { [$0] } ?? [])
        if let segment {
            changes.append(make(address: "segment.\(segment)", type: "segment", name: segment, actions: primary,
                                before: nil, after: .object(["name": .string(segment)]), context: context))
        }
        var costs: [String: Double] = [:]
        func collectCost(_ key: String, _ v: JSONValue, _ where_: String) throws {
            switch v {
            case .int(let i): costs[key] = Double(i)
            case .double(let d): costs[key] = d
            case .null: break
            default: throw PolicyError.invalidPlan("\(where_) must be a number, found \(v.typeName)")
            }
        }
        for key in costKeys.sorted() {
            if let v = top[key] { try collectCost(key, v, key) }
        }

        switch top["resources"] {
        case nil, .null?: break
        case .object(let res)?:
            guard res.count <= limits.maxResourceChanges else {
                throw PolicyError.tooLarge("the change set has \(res.count) resources; the limit is \(limits.maxResourceChanges)")
            }
            for key in res.keys.sorted() {
                let v = res[key]!
                if costKeys.contains(key) { try collectCost(key, v, "resources.\(key)"); continue }
                let type = singular(key)
                switch v {
                case .array(let items):
                    guard items.count <= limits.maxResourceChanges else {
                        throw PolicyError.tooLarge("resources.\(key) has \(items.count) items; the limit is \(limits.maxResourceChanges)")
                    }
                    for (i, item) in items.enumerated() {
                        let (name, count) = nameAndCount(item)
                        changes.append(make(address: "\(key)[\(i)]", type: type, name: name, actions: primary,
                                            before: nil, after: wrap(item), context: context + [name], count: count))
                    }
                case .string(let s):
                    if let (b, a) = splitTransition(s) {
                        changes.append(make(address: key, type: type, name: key, actions: [.update],
                                            before: .object(["value": .string(b)]), after: .object(["value": .string(a)]),
                                            context: context))
                    } else {
                        let (_, count) = nameAndCount(v)
                        changes.append(make(address: key, type: type, name: key, actions: primary,
                                            before: nil, after: wrap(v), context: context + [s], count: count))
                    }
                default:
                    changes.append(make(address: key, type: type, name: key, actions: primary,
                                        before: nil, after: wrap(v), context: context))
                }
            }
        case .array(let items)?:
            for (i, item) in items.enumerated() {
                let (name, count) = nameAndCount(item)
                changes.append(make(address: "resources[\(i)]", type: guessType(name), name: name, actions: primary,
                                    before: nil, after: wrap(item), context: context + [name], count: count))
            }
        case let other?:
            throw PolicyError.invalidPlan("resources must be an object or an array, found \(other.typeName)")
        }

        switch top["resources_to_delete"] {
        case nil, .null?: break
        case .array(let items)?:
            guard items.count <= limits.maxResourceChanges else {
                throw PolicyError.tooLarge("resources_to_delete has \(items.count) items; the limit is \(limits.maxResourceChanges)")
            }
            for (i, item) in items.enumerated() {
                guard case .string(let name) = item, !name.isEmpty else {
                    throw PolicyError.invalidPlan("resources_to_delete[\(i)] must be a non-empty string, found \(item.typeName)")
                }
                changes.append(make(address: name, type: guessType(name), name: name, actions: [.delete],
                                    before: .object(["name": .string(name)]), after: nil, context: [name]))
            }
        case let other?:
            throw PolicyError.invalidPlan("resources_to_delete must be an array of strings, found \(other.typeName)")
        }

        switch top["additional_actions"] {
        case nil, .null?: break
        case .object(let extra)?:
            for key in extra.keys.sorted() {
                let v = extra[key]!
                guard case .object(let o) = v else {
                    throw PolicyError.invalidPlan("additional_actions.\(key) must be an object, found \(v.typeName)")
                }
                var acts: [ResourceAction] = [.update]
                if let a = o["action"] {
                    guard case .string(let s) = a else {
                        throw PolicyError.invalidPlan("additional_actions.\(key).action must be a string, found \(a.typeName)")
                    }
                    acts = subActions(s)
                }
                changes.append(make(address: "additional_actions.\(key)", type: guessType(key), name: key,
                                    actions: acts, before: nil, after: v, context: [key], additional: true))
            }
        case .array(let items)?:
            for (i, item) in items.enumerated() {
                guard case .object(let o) = item else {
                    throw PolicyError.invalidPlan("additional_actions[\(i)] must be an object, found \(item.typeName)")
                }
                let label = o["name"]?.string ?? o["target"]?.string ?? o["action"]?.string ?? "action_\(i)"
                let acts = o["action"]?.string.map(subActions) ?? [.update]
                changes.append(make(address: "additional_actions[\(i)]", type: guessType(label), name: label,
                                    actions: acts, before: nil, after: item, context: [label], additional: true))
            }
        case let other?:
            throw PolicyError.invalidPlan("additional_actions must be an object, found \(other.typeName)")
        }

        var cost: Double?
        if let inc = costs["cost_increase"] ?? costs["estimated_monthly_cost_increase"] {
            cost = inc
        } else if primary == [.create], let total = costs["estimated_monthly_cost"] ?? costs["monthly_cost"] {
            cost = total
        } else if let savings = costs["estimated_cost_savings"] {
            cost = -savings
        }
        return Plan(format: .changesetJSON, formatVersion: nil, changes: changes,
                    costIncreaseMonthly: cost, primaryAction: action)
    }

    static func wrap(_ v: JSONValue) -> JSONValue {
        if case .object = v { return v }
        return .object(["value": v])
    }

    /// "3 → 18" → ("3", "18").
    static func splitTransition(_ s: String) -> (String, String)? {
        for arrow in ["→", "->", "=>"] {
            if let r = s.range(of: arrow) {
                let b = s[..<r.lowerBound].trimmingSpaces
                let a = s[r.upperBound...].trimmingSpaces
                if !b.isEmpty && !a.isEmpty { return (b, a) }
            }
        }
        return nil
    }

    /// "g5.xlarge x4" → ("g5.xlarge", 4).
    static func nameAndCount(_ v: JSONValue) -> (String, Int) {
        switch v {
        case .string(let s):
            let parts = s.split(separator: " ")
            if parts.count >= 2, let last = parts.last {
                var digits = Substring(last)
                if digits.hasPrefix("x") || digits.hasPrefix("×") { digits = digits.dropFirst() }
                if let n = Int(digits), n > 0, n < 1_000_000 { return (parts.dropLast().joined(separator: " "), n) }
            }
            return (s, 1)
        case .object(let o):
            let name = o["name"]?.string ?? o["id"]?.string ?? ""
            var count = 1
            if case .int(let n)? = o["count"], n > 0, n < 1_000_000 { count = Int(n) }
            return (name, count)
        default:
            return ("", 1)
        }
    }

    /// The actions of the main change-set action (`create_microsegment` → create).
    static func primaryActions(_ action: String) -> [ResourceAction] {
        let words = wordsOf(action)
        for w in words {
            if let cls = VerbClass.of(w) {
                switch cls {
                case .create: return [.create]
                case .delete: return [.delete]
                default: return [.update]
                }
            }
        }
        return [.update]
    }

    /// Actions of an additional action (`add_rule` on an existing firewall is an update).
    static func subActions(_ action: String) -> [ResourceAction] {
        let words = wordsOf(action)
        if words.contains(where: { VerbClass.of($0) == .delete }) { return [.delete] }
        if words.first.map({ VerbClass.of($0) == .create }) == true && words.count == 1 { return [.create] }
        return [.update]
    }

    static func singular(_ key: String) -> String {
        if key.hasSuffix("ies") { return String(key.dropLast(3)) + "y" }
        if key.hasSuffix("ses") { return String(key.dropLast(2)) }
        if key.hasSuffix("s") && !key.hasSuffix("ss") { return String(key.dropLast()) }
        return key
    }

    /// A type guessed from a free-form name (`dev-old-vpc-1` → `vpc`).
    static func guessType(_ name: String) -> String {
        let words = Set(wordsOf(name))
        let known: [(String, String)] = [
            ("firewall", "firewall_rule"), ("nacl", "network_acl"), ("sg", "security_group"),
            ("vpc", "vpc"), ("subnet", "subnet"), ("segment", "segment"), ("microsegment", "segment"),
            ("db", "database"), ("database", "database"), ("rds", "database"), ("bucket", "bucket"),
            ("instance", "instance"), ("cluster", "cluster"), ("trail", "cloudtrail"), ("cloudtrail", "cloudtrail"),
        ]
        for (w, t) in known where words.contains(w) { return t }
        return "resource"
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

/// Lower-cased words of a name or sentence, split on anything that is not a letter or digit
/// (`prod_pci` → prod, pci; `nonprod-ml` → nonprod, ml).
func wordsOf(_ s: String) -> [String] {
    var out: [String] = []
    if s.utf8.allSatisfy({ $0 < 0x80 }) {
        var word: [UInt8] = []
        for b in s.utf8 {
            let l = b >= 0x41 && b <= 0x5A ? b + 0x20 : b
            if (l >= 0x61 && l <= 0x7A) || (l >= 0x30 && l <= 0x39) {
                word.append(l)
            } else if !word.isEmpty {
                out.append(String(decoding: word, as: UTF8.self))
                word.removeAll(keepingCapacity: true)
            }
        }
        if !word.isEmpty { out.append(String(decoding: word, as: UTF8.self)) }
        return out
    }
    var current = ""
    for ch in s.lowercased().unicodeScalars {
        if CharacterSetLite.isWordScalar(ch) {
            current.unicodeScalars.append(ch)
        } else if !current.isEmpty {
            out.append(current)
            current = ""
        }
    }
    if !current.isEmpty { out.append(current) }
    return out
}

enum CharacterSetLite {
    static func isWordScalar(_ u: Unicode.Scalar) -> Bool {
        (u >= "a" && u <= "z") || (u >= "0" && u <= "9") || (u.value > 0x7F && u.properties.isAlphabetic)
    }
}
