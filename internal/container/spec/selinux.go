package spec

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// checkSELinux refuses SELinux options crid would not apply. crid sets no
// SELinux labels (process or mount): on a host with SELinux enabled a pod
// that asked for a label would silently run under whatever label crid's
// children inherit, so the request fails instead. On a host without
// SELinux the options are ignored, as the kubelet expects and containerd
// does (its labelling is a no-op there): they mean nothing on that host.
//
// The pod's options are checked too: the kubelet copies them into every
// container's context, but other clients may set them on the pod alone.
func checkSELinux(in Input) error {
	if !in.SELinuxEnabled {
		return nil
	}
	for _, o := range []struct {
		field string
		opts  *runtimeapi.SELinuxOption
	}{
		{"linux.security_context.selinux_options", in.Config.GetLinux().GetSecurityContext().GetSelinuxOptions()},
		{"sandbox_config.linux.security_context.selinux_options", in.Sandbox.GetLinux().GetSecurityContext().GetSelinuxOptions()},
	} {
		if err := RefuseSELinux(o.field, o.opts); err != nil {
			return err
		}
	}
	return nil
}

// RefuseSELinux is the error for SELinux options on a host with SELinux
// enabled (nil for none); RunPodSandbox checks the pod's with it.
func RefuseSELinux(field string, opts *runtimeapi.SELinuxOption) error {
	if opts.GetUser() == "" && opts.GetRole() == "" && opts.GetType() == "" && opts.GetLevel() == "" {
		return nil
	}
	l := opts.GetUser() + ":" + opts.GetRole() + ":" + opts.GetType() + ":" + opts.GetLevel()
	return invalid(field, "SELinux options are not applied by crid on this host, which has SELinux enabled: "+
		"refusing to run without the label %q asked for", l)
}
