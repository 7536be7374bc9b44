package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"curfew/pkg/plan"
)

// stateFile holds the parents' overrides. It lives in the state dir
// (/etc/curfew on a router: flash, so that a pause survives a reboot) and is
// written only when a parent acts — never on a timer, never when an override
// merely expires — to spare the flash.
const stateFile = "overrides.json"

type stateDoc struct {
	Version   int             `json:"version"`
	Overrides []plan.Override `json:"overrides"`
}

// loadOverrides reads the state file; a missing file is no overrides.
func loadOverrides(dir string) ([]plan.Override, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc stateDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	return doc.Overrides, nil
}

// saveOverrides writes the overrides file.
func saveOverrides(dir string, ovs []plan.Override) error {
	data, err := json.MarshalIndent(stateDoc{Version: 1, Overrides: ovs}, "", "  ")
	if err != nil {
		return err
	}
	return atomicWrite(dir, stateFile, append(data, '\n'))
}

// atomicWrite writes a file in dir atomically: a temporary file in the same
// directory, fsync, rename over the old one, fsync the directory. A power
// cut leaves either the old or the new file, never half of one.
func atomicWrite(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
