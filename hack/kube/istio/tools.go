//go:build tools

// Package tools keeps istio.io/api in go.mod and go.sum.
package tools

import _ "istio.io/api/networking/v1"
