package replica_test

import (
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
)

// Both backends reject through these, so their wording is the contract's.
func TestCheckLevelAndRange(t *testing.T) {
	for _, level := range []int{0, 1, replica.SnapshotLevel} {
		if err := replica.CheckLevel(level); err != nil {
			t.Errorf("level %d: %v", level, err)
		}
		if err := replica.CheckRange(level, 1, 1); err != nil {
			t.Errorf("level %d, 1-1: %v", level, err)
		}
	}
	for _, level := range []int{-1, replica.SnapshotLevel + 1} {
		if err := replica.CheckLevel(level); err == nil || !strings.Contains(err.Error(), "invalid level") || !strings.Contains(err.Error(), "must be 0..9") {
			t.Errorf("level %d: err = %v", level, err)
		}
		if err := replica.CheckRange(level, 1, 2); err == nil || !strings.Contains(err.Error(), "invalid level") {
			t.Errorf("range at level %d: err = %v", level, err)
		}
	}
	for _, r := range [][2]uint64{{0, 0}, {0, 5}, {3, 2}} {
		err := replica.CheckRange(0, ltx.TXID(r[0]), ltx.TXID(r[1]))
		if err == nil || !strings.Contains(err.Error(), "invalid TXID range") {
			t.Errorf("range %d-%d: err = %v", r[0], r[1], err)
		}
	}
}
