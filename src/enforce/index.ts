/** The one enforcement pipeline and the ports its edges wire. */
export { Enforcer, type EnforcerDeps } from './enforcer';
export { LeaseBudgets, type BudgetStats } from './budgets';
export * from './ports';
