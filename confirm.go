package litefs

import (
	"context"
	"sync"
	"time"

	"github.com/superfly/ltx"
)

// confirmed is the newest TXID this daemon's own uploads put in the
// replica (or that start-up found there on resuming): what a wait for a
// commit may trust. A replica moved by another writer does not count, so
// a waiter never takes someone else's history for its commit.
type confirmed struct {
	mu   sync.Mutex
	txid ltx.TXID
	ch   chan struct{} // closed and replaced when txid advances
}

func (c *confirmed) advance(txid ltx.TXID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if txid <= c.txid {
		return
	}
	c.txid = txid
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

func (c *confirmed) get() (ltx.TXID, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.txid, c.ch
}

// stopCheck is how often a waiter looks whether replication stopped (a
// fence does not advance the confirmed TXID, so nothing else wakes it).
const stopCheck = 250 * time.Millisecond

// WaitReplicated returns once the replica holds TXID txid of this
// database's history, with an error when ctx ends first or when
// replication stopped (fenced, or out of WAL mode): such a commit will not
// reach the replica from here. It forces no upload: the commit goes with
// the next one (sync-interval), which it wakes if it is idle.
func (d *DB) WaitReplicated(ctx context.Context, txid ltx.TXID) error {
	d.up.staged()
	t := time.NewTicker(stopCheck)
	defer t.Stop()
	for {
		have, ch := d.up.confirmed.get()
		if have >= txid {
			return nil
		}
		if st, err := d.State(); st == StateStopped {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-t.C:
		}
	}
}

// ReplicatedTXID is the newest TXID of this database's history the replica
// holds, as WaitReplicated counts it.
func (d *DB) ReplicatedTXID() ltx.TXID {
	txid, _ := d.up.confirmed.get()
	return txid
}
