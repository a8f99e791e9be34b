package litefs

import (
	"testing"
)

func TestConfirmedWakesWaiters(t *testing.T) {
	var c confirmed
	txid, ch := c.get()
	if txid != 0 {
		t.Fatalf("zero confirmed TXID %d", txid)
	}
	c.advance(5)
	select {
	case <-ch:
	default:
		t.Fatal("advance did not wake the waiter")
	}
	_, ch = c.get()
	c.advance(3) // never backwards
	select {
	case <-ch:
		t.Fatal("a lower TXID woke the waiter")
	default:
	}
	if txid, _ := c.get(); txid != 5 {
		t.Fatalf("confirmed %d after advance(5), advance(3)", txid)
	}
}
