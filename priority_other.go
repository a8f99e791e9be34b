//go:build !linux

package litefs

func lowerThreadPriority() {}
