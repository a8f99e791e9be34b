package replica

import (
	"runtime"
	"syscall"
	"testing"
)

// oDirect spells out O_DIRECT; it must be the system's.
func TestODirectIsTheSystems(t *testing.T) {
	switch runtime.GOARCH {
	case "amd64", "386", "riscv64", "arm64", "arm":
		if oDirect != syscall.O_DIRECT {
			t.Fatalf("oDirect = %#o, syscall.O_DIRECT = %#o", oDirect, syscall.O_DIRECT)
		}
	default:
		if oDirect != 0 {
			t.Fatalf("oDirect = %#o on %s, where it is not spelled out", oDirect, runtime.GOARCH)
		}
	}
}
