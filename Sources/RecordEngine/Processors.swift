import CSystemShims

/// CPUs this process may run on: its affinity mask, which containers and
/// `taskset` narrow, not the machine's count.
public func availableProcessors() -> Int {
    Int(avml_available_cpus())
}
