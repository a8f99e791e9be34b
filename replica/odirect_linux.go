package replica

import "syscall"

// oDirect opens the temp file for direct writes (see directMin).
const oDirect = syscall.O_DIRECT
