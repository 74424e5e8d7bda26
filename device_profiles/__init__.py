"""Board types shipped with hilbench (`harness.profiles`); a lab's own device_profiles/ comes first."""
