export * as NodeSupervisor from "./NodeSupervisor.ts"
