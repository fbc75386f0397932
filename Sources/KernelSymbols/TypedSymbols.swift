/// A C type as the kernel declares a variable, resolved by name against the kernel's BTF.
indirect enum DeclaredType: Sendable {
    /// An INT or FLOAT by its BTF name, e.g. "unsigned int".
    case base(String)
    case structure(String)
    case union(String)
    case typedef(String)
    case pointer(DeclaredType)
    case array(DeclaredType, count: ArrayCount)
    case function
    /// A struct without a tag, found by its member names (`static struct { ... } tk_core`).
    case anonymousStructure(members: [String])
    /// The first alternative this kernel's BTF has: declarations change between versions.
    case firstOf([DeclaredType])
}

/// How many elements an array symbol has.
enum ArrayCount: Sendable {
    case fixed(Int)
    /// Up to the next symbol's address: for arrays whose length is a build option.
    case untilNextSymbol
    /// By kernel version (major, minor, count), the last entry not newer than the kernel winning.
    case byKernelVersion([(major: Int, minor: Int, count: Int)])
}

/// A kernel variable that Volatility 3 reads with its type (`object_from_symbol`, `get_symbol(...).type`).
struct TypedSymbol: Sendable {
    var name: String
    var type: DeclaredType

    init(_ name: String, _ type: DeclaredType) {
        self.name = name
        self.type = type
    }
}

/// Every symbol that volatility3 2.28.2's Linux code (framework/plugins/linux,
/// framework/symbols/linux, framework/automagic) reads with its type.
///
/// BTF types only per-CPU variables and functions, so without this table those reads
/// fail ("Symbol ... has no associated type"). The declarations are the kernel's (5.x and
/// 6.x; older ones where Volatility reads symbols that newer kernels dropped), resolved
/// against the BTF of the kernel at hand; a symbol the kernel lacks is left out.
/// tests/interop/test_typed_symbols.py re-reads the installed volatility3 and fails when it
/// reads a typed symbol that is not listed here.
let volatilityTypedSymbols: [TypedSymbol] = [
    // automagic/linux.py (finding the kernel), plugins/linux/pslist.py, sockscan.py
    TypedSymbol("init_task", .structure("task_struct")),
    TypedSymbol("init_mm", .structure("mm_struct")),
    TypedSymbol("init_files", .structure("files_struct")),
    TypedSymbol("pkmap_count", .array(.base("int"), count: .untilNextSymbol)),  // 32-bit only
    // symbols/linux/__init__.py, utilities/modules.py: the kernel's text range
    TypedSymbol("_text", .array(.base("char"), count: .fixed(0))),
    TypedSymbol("_etext", .array(.base("char"), count: .fixed(0))),
    // symbols/linux/__init__.py: radix trees (kernels before 4.20)
    TypedSymbol("height_to_maxindex", .array(.base("long unsigned int"), count: .untilNextSymbol)),
    TypedSymbol("height_to_maxnodes", .array(.base("long unsigned int"), count: .untilNextSymbol)),
    // symbols/linux/extensions: boot time, page map
    TypedSymbol("tk_core", .firstOf([.structure("tk_data"), .anonymousStructure(members: ["seq", "timekeeper"])])),
    TypedSymbol("timekeeper", .structure("timekeeper")),
    TypedSymbol("wall_to_monotonic", .firstOf([.structure("timespec"), .structure("timespec64")])),
    TypedSymbol("total_sleep_time", .firstOf([.structure("timespec"), .structure("timespec64")])),
    TypedSymbol("vmemmap_base", .base("long unsigned int")),
    TypedSymbol("mem_map", .pointer(.structure("page"))),
    TypedSymbol("cap_last_cap", .base("int")),
    // symbols/linux/kallsyms.py
    TypedSymbol("kallsyms_num_syms", .base("unsigned int")),  // unsigned long before 4.20, which has no sysfs BTF
    TypedSymbol("ftrace_mod_maps", .structure("list_head")),
    TypedSymbol("ftrace_ops_trampoline_list", .structure("list_head")),
    TypedSymbol("bpf_kallsyms", .structure("list_head")),
    // symbols/linux/utilities/modules.py, tainting.py
    TypedSymbol("modules", .structure("list_head")),
    TypedSymbol("module_kset", .pointer(.structure("kset"))),
    TypedSymbol("mod_tree", .structure("mod_tree_root")),
    TypedSymbol("module_addr_min", .base("long unsigned int")),
    TypedSymbol("module_addr_max", .base("long unsigned int")),
    TypedSymbol(
        "taint_flags",
        .array(
            .structure("taint_flag"),
            count: .byKernelVersion([(4, 10, 16), (4, 15, 18), (6, 0, 19), (6, 15, 20)]))),  // TAINT_FLAGS_COUNT
    // plugins/linux/kmsg.py
    TypedSymbol("prb", .pointer(.structure("printk_ringbuffer"))),
    TypedSymbol("log_buf", .pointer(.base("char"))),
    TypedSymbol("log_buf_len", .firstOf([.typedef("u32"), .base("unsigned int")])),
    TypedSymbol("log_first_idx", .firstOf([.typedef("u32"), .base("unsigned int")])),
    TypedSymbol("log_next_idx", .firstOf([.typedef("u32"), .base("unsigned int")])),
    TypedSymbol("log_end", .base("unsigned int")),
    // plugins/linux/pidhashtable.py (kernels before 4.15)
    TypedSymbol("pid_hash", .pointer(.structure("hlist_head"))),
    TypedSymbol("pidhash_shift", .base("unsigned int")),
    // plugins/linux/ebpf.py
    TypedSymbol("prog_idr", .structure("idr")),
    // plugins/linux/sockstat.py, sockscan.py, ip.py, malware/netfilter.py
    TypedSymbol("net_namespace_list", .structure("list_head")),
    TypedSymbol("socket_file_ops", .structure("file_operations")),
    TypedSymbol("sockfs_dentry_operations", .structure("dentry_operations")),
    TypedSymbol("sock_def_destruct", .function),
    TypedSymbol("packet_sock_destruct", .function),
    TypedSymbol("unix_sock_destructor", .function),
    TypedSymbol("netlink_sock_destruct", .function),
    TypedSymbol("inet_sock_destruct", .function),
    TypedSymbol("nf_hooks", .array(.array(.structure("list_head"), count: .fixed(8)), count: .fixed(13))),  // before 4.13
    // plugins/linux/malware/check_afinfo.py
    TypedSymbol("tcp6_seq_afinfo", .structure("tcp_seq_afinfo")),
    TypedSymbol("tcp4_seq_afinfo", .structure("tcp_seq_afinfo")),
    TypedSymbol("udplite6_seq_afinfo", .structure("udp_seq_afinfo")),
    TypedSymbol("udp6_seq_afinfo", .structure("udp_seq_afinfo")),
    TypedSymbol("udplite4_seq_afinfo", .structure("udp_seq_afinfo")),
    TypedSymbol("udp4_seq_afinfo", .structure("udp_seq_afinfo")),
    TypedSymbol("raw_seq_ops", .structure("seq_operations")),
    TypedSymbol("udp_seq_ops", .structure("seq_operations")),
    TypedSymbol("arp_seq_ops", .structure("seq_operations")),
    TypedSymbol("unix_seq_ops", .structure("seq_operations")),
    TypedSymbol("udp6_seq_ops", .structure("seq_operations")),
    TypedSymbol("raw6_seq_ops", .structure("seq_operations")),
    TypedSymbol("tcp_seq_ops", .structure("seq_operations")),
    TypedSymbol("tcp4_seq_ops", .structure("seq_operations")),
    TypedSymbol("tcp6_seq_ops", .structure("seq_operations")),
    TypedSymbol("packet_seq_ops", .structure("seq_operations")),
    // plugins/linux/malware/check_idt.py, keyboard_notifiers.py, tty_check.py
    TypedSymbol("idt_table", .array(.typedef("gate_desc"), count: .fixed(256))),
    TypedSymbol("keyboard_notifier_list", .structure("atomic_notifier_head")),
    TypedSymbol("tty_drivers", .structure("list_head")),
    // plugins/linux/tracing/ftrace.py, tracepoints.py
    TypedSymbol("ftrace_ops_list", .pointer(.structure("ftrace_ops"))),
    TypedSymbol("ftrace_list_end", .structure("ftrace_ops")),
    TypedSymbol("__start___tracepoints_ptrs", .array(.typedef("tracepoint_ptr_t"), count: .fixed(0))),
    // plugins/linux/graphics/fbdev.py
    TypedSymbol("num_registered_fb", .base("int")),
    TypedSymbol("registered_fb", .array(.pointer(.structure("fb_info")), count: .fixed(32))),
]
