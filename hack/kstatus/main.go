// Command kstatus-check reads a JSON array of Kubernetes objects on stdin and prints, for each,
// the verdict of kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute): the library that
// Flux and kpt/cli-utils use to decide whether an applied resource is Current, InProgress or
// Failed. Output: a JSON array of {"status", "message"} in the order of the input.
//
// Built by e2e/cluster/build-binaries.sh kstatus; used by tests/unit/test_status_readers.py.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var objs []map[string]interface{}
	if err := json.Unmarshal(raw, &objs); err != nil {
		fail(fmt.Errorf("stdin must be a JSON array of objects: %w", err))
	}
	out := make([]verdict, 0, len(objs))
	for i, o := range objs {
		// unstructured.Unstructured wants int64 where JSON decoding gave float64
		// (metadata.generation, status.observedGeneration).
		u := &unstructured.Unstructured{Object: normalize(o).(map[string]interface{})}
		res, err := status.Compute(u)
		if err != nil {
			fail(fmt.Errorf("object %d: %w", i, err))
		}
		out = append(out, verdict{Status: res.Status.String(), Message: res.Message})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fail(err)
	}
}

func normalize(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []interface{}:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
		return x
	default:
		return v
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus-check:", err)
	os.Exit(1)
}
