// Command cnihang is a CNI plugin for fault tests: chained after the real
// plugins, it passes ADD's result through, and on DEL it hangs for as long
// as the file its config names as "hangFile" exists, like a plugin whose
// daemon is down.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		HangFile   string          `json:"hangFile"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	in, err := io.ReadAll(os.Stdin)
	if err == nil && len(in) > 0 {
		err = json.Unmarshal(in, &conf)
	}
	if err != nil {
		fmt.Fprintf(os.Stdout, `{"code": 6, "msg": "decode config: %v"}`, err)
		os.Exit(1)
	}
	switch os.Getenv("CNI_COMMAND") {
	case "ADD":
		if len(conf.PrevResult) == 0 {
			conf.PrevResult = []byte(fmt.Sprintf(`{"cniVersion": %q}`, conf.CNIVersion))
		}
		os.Stdout.Write(conf.PrevResult)
	case "DEL":
		for conf.HangFile != "" {
			if _, err := os.Stat(conf.HangFile); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "VERSION":
		fmt.Fprint(os.Stdout, `{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}`)
	}
}
