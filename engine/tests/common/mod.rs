pub mod crash_workload;
